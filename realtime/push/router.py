"""
The router: what happens between "a backend pushed" or "a client asked" and
"frames were written", when it involves more than one session.

It frames pushes for the routing's protocol, queues pushes for uids
without a connection (C{realtime.push.offline}), appends channel messages to
history before they go live (so every live message has an offset a client
can resume from, by C{realtime.push.channels}), and tells the channel service
when a session closes.  Channels-protocol requests do not pass through
here: the channels routing strategy takes them to the channel service
itself.  Delivery itself is the broker's; storage the store's.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from realtime.core import channelwire as channelproto
from realtime.core.namespaces import NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.interfaces import IBroker, IMessageStore, ISession
from realtime.push.channels import MAX_SUBSCRIPTIONS, ChannelService, RequestError
from realtime.push.offline import KeyedSerializer, OfflineQueues
from realtime.values import Envelope, OfflineLimits, PushResult, Target, ToChannel, ToUids

__all__ = ["Router", "ChannelPublisher", "RequestError", "KeyedSerializer", "MAX_SUBSCRIPTIONS"]


class ChannelPublisher:
    """
    A message to a channel: into its history if the channel keeps one (so
    it has an offset), then live to the subscribers with that offset.

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
            d = self._store.append(channel, data, False, options.retention, self._reactor.seconds())
            return d.addCallback(self._publishStored, channel, data)
        return self._publishStored(None, channel, data)

    def _publishStored(self, stored: Any, channel: str, data: bytes) -> Deferred[PushResult]:
        offset = stored.offset if stored is not None else None
        epoch = stored.epoch if stored is not None else None
        wire = channelproto.encodeMessage(channel, offset, epoch, data)
        return self._broker.publish(Envelope(ToChannel(channel), wire, False, offset)).addCallback(
            lambda result: PushResult(result.delivered, offset=offset, epoch=epoch)
        )


@implementer(IBroker)
class Router:
    """
    Offline queues, channel history and the channels protocol over a broker
    and a store.

    It provides L{IBroker} itself, so the HTTP API and the line port push
    through it unchanged.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        registry: SessionRegistry,
        broker: IBroker,
        store: IMessageStore | None,
        rules: NamespaceRules,
        offline: OfflineLimits | None,
        authorizer: object = None,
        framePush: Callable[[bytes, bool], tuple[bytes, bool]] | None = None,
        fanout: Fanout | None = None,
        channels: ChannelService | None = None,
        channelPublisher: ChannelPublisher | None = None,
    ) -> None:
        """
        @param fanout: the broker's, if it has one: offline queueing then
            shares its budget per reactor turn and its order (see
            L{Fanout.each}).
        @param channels: the channel service, built first when a routing
            strategy needs it (C{IRoutingContext}); one over the same
            broker and store otherwise.
        @param channelPublisher: the channel service's, if it is given.
        """
        self._reactor = reactor
        self.registry = registry
        self.broker = broker
        self.store = store
        self.rules = rules
        self._framePush = framePush
        self.offline = (
            OfflineQueues(reactor, registry, broker, store, offline, self._frame, fanout or Fanout(reactor))
            if offline is not None and store is not None
            else None
        )
        self._brokerNow = getattr(broker, "pushNow", None)
        self.channelPublisher = channelPublisher or ChannelPublisher(reactor, broker, store, rules)
        self.channels = channels or ChannelService(
            reactor, registry, broker, store, rules, self.channelPublisher.publish, authorizer
        )

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

    def _frame(self, payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
        return self._framePush(payload, isBinary) if self._framePush else (payload, isBinary)

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

    # -- IBroker: what backends push ---------------------------------------------

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        """
        Push to uids (queueing for those without a connection), to
        everyone, or to a channel (through its history).
        """
        target = envelope.target
        if isinstance(target, ToChannel):
            return self.publishToChannel(target.name, envelope.payload)
        payload, isBinary = self._frame(envelope.payload, envelope.isBinary)
        d = self.broker.publish(Envelope(target, payload, isBinary))
        if self.offline is not None and isinstance(target, ToUids):
            d.addCallback(self.offline.queueMissing, envelope.payload, envelope.isBinary)
        return d

    def pushNow(self, target: Target, payload: bytes, isBinary: bool) -> int | None:
        """
        L{publish} without Deferreds where the answer needs no waiting: to
        uids that all have a connection here (or with no offline queue), or
        to everyone.  How many sessions got it, or C{None} with nothing done.
        """
        fast = self._brokerNow
        if fast is None or type(target) is ToChannel:
            return None
        if self.offline is not None and type(target) is ToUids:
            # a uid whose connections are all closing gets the push queued,
            # which only the Deferred path does
            sessionsOf = self.registry.sessionsOf
            for uid in target.uids:
                for session in sessionsOf(uid):
                    if session.isOpen():
                        break
                else:
                    return None
        if self._framePush is not None:
            payload, isBinary = self._framePush(payload, isBinary)
        return fast(target, payload, isBinary)

    def publishToChannel(self, channel: str, data: bytes) -> Deferred[PushResult]:
        """
        Publish C{data} (JSON text) through the channel's history
        (L{ChannelPublisher}).
        """
        return self.channelPublisher.publish(channel, data)

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
