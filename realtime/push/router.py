"""
The router: what happens between "a backend pushed" or "a client asked" and
"frames were written", when it involves more than one session.

It frames pushes for the routing's protocol, queues pushes for uids
without a connection (C{realtime.push.offline}), appends channel messages to
history before they go live (L{ChannelPublisher}: every live message has an
offset a client can resume from), and tells the channel service when a
session closes.  Channels-protocol requests do not pass through here: the
channels routing strategy takes them to the channel service itself.
Delivery itself is the broker's; storage the store's.  The router is not a
broker: it holds one, and its parts are given to it built
(C{realtime.wiring.buildRouter}).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime.core import channelwire
from realtime.core.namespaces import NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.interfaces import IBatchBroker, IBatchPublisher, IBroker, IHistoryBroker, IMessageStore, ISession
from realtime.push.batch import Outcome, gathered, oneByOne
from realtime.push.channels import MAX_SUBSCRIPTIONS, ChannelService, RequestError
from realtime.push.offline import KeyedSerializer, OfflineQueues
from realtime.values import Envelope, PushResult, ToChannel, ToUids

__all__ = ["Router", "ChannelPublisher", "RequestError", "KeyedSerializer", "MAX_SUBSCRIPTIONS"]

Framing = Callable[[bytes, bool], "tuple[bytes, bool]"]


class ChannelPublisher:
    """
    A message to a channel: into its history if the channel keeps one (so
    it has an offset), then live to the subscribers with that offset.

    A broker that does both in one step (L{IHistoryBroker}: the Redis
    broker on the Redis store) is asked to: two steps would let another
    node's message to the channel overtake between them.

    Shared by the router (backend publishes) and the channel service
    (clients' publishes), which is why it is neither of them: the channel
    service is built before the router (a routing strategy may need it, and
    the router needs the strategy's framing).
    """

    def __init__(self, reactor: IReactorTime, broker: IBroker, store: IMessageStore | None, rules: NamespaceRules) -> None:
        self._reactor = reactor
        self._broker = broker
        self._store = store
        self._rules = rules

    def publish(self, channel: str, data: bytes) -> Deferred[PushResult]:
        """
        Append C{data} (JSON text) to the channel's history if it keeps one,
        then deliver it to the subscribers with its offset.
        """
        options = self._rules.match(channel)
        if options.history and self._store is not None:
            broker = self._broker
            if IHistoryBroker.providedBy(broker):
                return broker.publishStored(channel, data, options.retention, self._reactor.seconds())
            d = self._store.append(channel, data, False, options.retention, self._reactor.seconds())
            return d.addCallback(self._publishStored, channel, data)
        return self._publishStored(None, channel, data)

    def _publishStored(self, stored: Any, channel: str, data: bytes) -> Deferred[PushResult]:
        offset = stored.offset if stored is not None else None
        epoch = stored.epoch if stored is not None else None
        wire = channelwire.encodeMessage(channel, offset, epoch, data)
        result = self._broker.publish(Envelope(ToChannel(channel), wire, False, offset, epoch))
        if isinstance(result, Deferred):
            return result.addCallback(lambda r: PushResult(r.delivered, offset=offset, epoch=epoch))
        return succeed(PushResult(result.delivered, offset=offset, epoch=epoch))


@implementer(IBatchPublisher)
class Router:
    """
    Offline queues, channel history and framing over a broker
    and a store: what the HTTP API and the line port push through.
    """

    def __init__(
        self,
        registry: SessionRegistry,
        broker: IBroker,
        channels: ChannelService,
        channelPublisher: ChannelPublisher,
        offline: OfflineQueues | None = None,
        framePush: Framing | None = None,
        store: IMessageStore | None = None,
    ) -> None:
        """
        @param offline: the offline queues, if pushes to uids without a
            connection wait for them.
        @param framePush: the routing's framing of backend pushes, if it has
            one (C{IPushFraming}).
        @param store: the store under the offline queues and the history,
            for the metrics (C{realtime_store_up}).
        """
        self.registry = registry
        self.broker = broker
        self.channels = channels
        self.offline = offline
        self.store = store
        self._channelPublisher = channelPublisher
        self._framePush = framePush

    @property
    def queuedPushes(self) -> int:
        """
        Pushes kept in offline queues.
        """
        return self.offline.queued if self.offline is not None else 0

    @property
    def refusedPushes(self) -> int:
        """
        Pushes refused because the uid's offline queue was full.
        """
        return self.offline.refused if self.offline is not None else 0

    @property
    def deliveredOffline(self) -> int:
        """
        Queued pushes delivered at their uid's next connection.
        """
        return self.offline.delivered if self.offline is not None else 0

    # -- sessions ----------------------------------------------------------------

    def sessionOpened(self, session: ISession) -> None:
        """
        Index the session; hand it the pushes that waited for its uid.
        """
        self.registry.add(session)
        if self.offline is not None:
            self.offline.sessionOpened(session)

    def sessionClosed(self, session: ISession) -> None:
        """
        Leave every channel and every index.
        """
        self.channels.sessionClosed(session)
        self.registry.discard(session)

    # -- IPublisher: what backends push ------------------------------------------

    def publish(self, envelope: Envelope) -> PushResult | Deferred[PushResult]:
        """
        Push to uids (queueing for those without an open connection), to
        everyone, to sessions, or to a channel (through its history).

        Synchronous whenever the broker answers at once and no uid needs
        its offline queue: the line port's common case costs no Deferred.
        """
        target = envelope.target
        if type(target) is ToChannel:
            return self._channelPublisher.publish(target.name, envelope.payload)
        framePush = self._framePush
        outgoing = envelope if framePush is None else Envelope(target, *framePush(envelope.payload, envelope.isBinary))
        result = self.broker.publish(outgoing)
        offline = self.offline
        if offline is None or type(target) is not ToUids:
            return result
        # a uid whose connections are all closing counts 0 and gets the
        # push queued, like a uid without any
        if isinstance(result, PushResult):
            if 0 not in result.uids.values():
                # every uid reached (nearly every push): nothing to queue
                return result
            return offline.queueMissing(result, envelope.payload, envelope.isBinary)
        return result.addCallback(offline.queueMissing, envelope.payload, envelope.isBinary)

    def publishBatch(self, envelopes: Sequence[Envelope]) -> Deferred[list[Outcome]]:
        """
        Several pushes as one operation of the broker when it has one
        (L{IBatchBroker}) and none is to a channel (a channel's message goes
        through its history first); one by one otherwise.  Each push's
        outcome is what L{publish} would have answered for it.
        """
        broker = self.broker
        if not IBatchBroker.providedBy(broker) or ToChannel in {type(e.target) for e in envelopes}:
            return oneByOne(self.publish, envelopes)
        framePush = self._framePush
        outgoing = (
            envelopes
            if framePush is None
            else [Envelope(e.target, *framePush(e.payload, e.isBinary)) for e in envelopes]
        )
        published = broker.publishBatch(outgoing)
        if self.offline is None:
            return published
        return published.addCallback(self._queueMissingIn, envelopes, self.offline)

    @staticmethod
    def _queueMissingIn(
        outcomes: list[Any], envelopes: Sequence[Envelope], offline: OfflineQueues
    ) -> Deferred[list[Outcome]]:
        # queueMissing answers a push that reached every uid as it is
        for i, (outcome, envelope) in enumerate(zip(outcomes, envelopes, strict=True)):
            if type(envelope.target) is ToUids and isinstance(outcome, PushResult):
                try:
                    outcomes[i] = offline.queueMissing(outcome, envelope.payload, envelope.isBinary)
                except Exception:
                    outcomes[i] = Failure()
        return gathered(outcomes)

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        Who is subscribed to C{channel}.
        """
        return self.broker.presence(channel)

    def connectionCount(self, uid: str) -> Deferred[int]:
        """
        How many sessions C{uid} holds.
        """
        return self.broker.connectionCount(uid)

    def stats(self) -> Deferred[dict[str, Any]]:
        """
        The broker's counters and the offline queues'.
        """

        def add(stats: dict[str, Any]) -> dict[str, Any]:
            stats = dict(stats)
            stats["offlineQueued"] = self.queuedPushes
            stats["offlineRefused"] = self.refusedPushes
            stats["offlineDelivered"] = self.deliveredOffline
            return stats

        return self.broker.stats().addCallback(add)
