"""
The hub: what happens between "a backend pushed" or "a client asked" and
"frames were written", when it involves more than one session.

It keeps the offline queue of uids without a connection (in order, once,
with no push lost at the moment a uid connects), appends channel messages
to history before they go live (so every live message has an offset a
client can resume from), and carries out the requests of the channels
protocol.  Delivery itself is the broker's; storage is the store's.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime import channelproto
from realtime.delivery import Frame
from realtime.interfaces import IBroker, IChannelAuthorizer, IMessageStore, ISession
from realtime.namespaces import NamespaceOptions, NamespaceRules
from realtime.registry import SessionRegistry
from realtime.subscription import Subscription
from realtime.values import Envelope, Identity, OfflineLimits, PushResult, ToChannel, ToUids

#: channels one connection may subscribe to
MAX_SUBSCRIPTIONS = 512


class RequestError(Exception):
    """
    A channels request refused with an error code from
    C{channelproto.ERRORS}.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KeyedSerializer:
    """
    Runs jobs one at a time per key, in the order they were given.

    The offline queue of a uid is touched by pushes (append) and by
    connects (take); doing those strictly in order per uid is what makes a
    push at the moment of connecting land exactly once.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[Callable[[], Any], Deferred[Any]]]] = {}

    def run(self, key: str, job: Callable[[], Any]) -> Deferred[Any]:
        """
        Run C{job} after every earlier job of C{key}.
        """
        done: Deferred[Any] = Deferred()
        waiting = self._queues.get(key)
        if waiting is None:
            self._queues[key] = deque()
            self._start(key, job, done)
        else:
            waiting.append((job, done))
        return done

    def _start(self, key: str, job: Callable[[], Any], done: Deferred[Any]) -> None:
        maybeDeferred(job).addBoth(self._finished, key, done)

    def _finished(self, result: object, key: str, done: Deferred[Any]) -> None:
        waiting = self._queues[key]
        if waiting:
            self._start(key, *waiting.popleft())
        else:
            del self._queues[key]
        done.callback(result)

    def __len__(self) -> int:
        return len(self._queues)

    def __contains__(self, key: str) -> bool:
        return key in self._queues


def identityMaySubscribe(identity: Identity, channel: str) -> bool:
    """
    The default policy: the identity's own channel, or one its credentials
    list (``fnmatch`` patterns).
    """
    from fnmatch import fnmatchcase

    if channel == f"user:{identity.uid}":
        return True
    return any(fnmatchcase(channel, pattern) for pattern in identity.channels)


@implementer(IBroker)
class Hub:
    """
    Offline queues, channel history and the channels protocol over a broker
    and a store.

    It provides L{IBroker} itself, so the HTTP API and the line port push
    through it unchanged.
    """

    log = Logger()

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
    ) -> None:
        self._reactor = reactor
        self.registry = registry
        self.broker = broker
        self.store = store
        self.rules = rules
        self.offline = offline if store is not None else None
        self._authorizer = authorizer if IChannelAuthorizer.providedBy(authorizer) else None
        self._framePush = framePush
        self._serial = KeyedSerializer()
        self.queuedPushes = 0
        self.refusedPushes = 0
        self.deliveredOffline = 0
        # uid -> when we last told the store it connected (written at most
        # hourly per uid, so reconnect storms cost no writes)
        self._seen: dict[str, float] = {}
        # uids with pushes waiting; None until read from the store, and
        # while None every connecting uid asks the store
        self._waiting: set[str] | None = None
        if self.offline is not None:
            assert self.store is not None
            self.store.offlineUids(reactor.seconds()).addCallbacks(self._waitingLoaded, self._ebWaiting)

    def _waitingLoaded(self, uids: set[str]) -> None:
        # uids queued or drained meanwhile already changed the answer: only
        # add what the store knew and we did not touch since
        self._waiting = set(uids) | (self._waiting or set())

    def _ebWaiting(self, failure: Failure) -> None:
        self.log.failure("reading which uids have offline messages failed; checking each connection", failure)

    # -- sessions --------------------------------------------------------------

    def sessionOpened(self, session: ISession) -> None:
        """
        Index the session; hand it the pushes that waited for its uid.
        """
        self.registry.add(session)
        if self.offline is None:
            return
        uid = session.uid
        now = self._reactor.seconds()
        if now - self._seen.get(uid, -3600.0) >= 3600.0:
            if len(self._seen) > 1_000_000:
                self._seen.clear()
            self._seen[uid] = now
            assert self.store is not None
            self.store.markSeen(uid, now).addErrback(lambda f: self.log.failure("recording {uid} failed", f, uid=uid))
        # a push being queued for this uid right now is in the serializer:
        # drain after it, or it would wait for the next connection
        if self._waiting is None or uid in self._waiting or uid in self._serial:
            session.holdDeliveries()
            self._serial.run(uid, lambda: self._drainOffline(session)).addErrback(self._ebDrain, session)

    def _drainOffline(self, session: ISession) -> Deferred[None]:
        if not session.isOpen():
            session.releaseDeliveries(())
            return succeed(None)
        assert self.store is not None
        return self.store.takeOffline(session.uid, self._reactor.seconds()).addCallback(
            self._deliverOffline, session
        )

    def _deliverOffline(self, messages: list[Any], session: ISession) -> Deferred[None] | None:
        if not messages and self._waiting is not None:
            self._waiting.discard(session.uid)
        if messages and not session.isOpen():
            # taken, but the connection went away meanwhile: put them back,
            # still before anything queued later (this uid's jobs are serial)
            return self._requeue(session.uid, messages)
        frames = [Frame(*self._frame(m.payload, m.isBinary)) for m in messages]
        self.deliveredOffline += len(frames)
        if self._waiting is not None:
            self._waiting.discard(session.uid)
        session.releaseDeliveries(frames)
        return None

    def _requeue(self, uid: str, messages: list[Any]) -> Deferred[None]:
        assert self.store is not None and self.offline is not None
        d: Deferred[Any] = succeed(None)
        for m in messages:
            d.addCallback(lambda _, m=m: self.store.queueOffline(uid, m.payload, m.isBinary, self.offline, m.timestamp))
        return d.addCallback(lambda _: None)

    def _ebDrain(self, failure: Failure, session: ISession) -> None:
        self.log.failure("delivering offline messages to {uid} failed", failure, uid=session.uid)
        session.releaseDeliveries(())

    def sessionClosed(self, session: ISession) -> None:
        """
        Leave every channel (announcing leaves) and every index.
        """
        for subscription in list((session.subscriptions or {}).values()):
            self._unsubscribe(subscription)
        session.subscriptions = None
        self.registry.discard(session)

    # -- IBroker: what backends push -------------------------------------------

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        """
        Push to uids (queueing for those without a connection), to
        everyone, or to a channel (through its history).
        """
        target = envelope.target
        if isinstance(target, ToChannel):
            return self.publishToChannel(target.name, envelope.payload)
        if isinstance(target, ToUids):
            return self._pushToUids(target.uids, envelope.payload, envelope.isBinary)
        payload, isBinary = self._frame(envelope.payload, envelope.isBinary)
        return self.broker.publish(Envelope(target, payload, isBinary))

    def _frame(self, payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
        return self._framePush(payload, isBinary) if self._framePush else (payload, isBinary)

    def _pushToUids(self, uids: tuple[str, ...], payload: bytes, isBinary: bool) -> Deferred[PushResult]:
        framed, framedBinary = self._frame(payload, isBinary)
        d = self.broker.publish(Envelope(ToUids(uids), framed, framedBinary))
        if self.offline is None:
            return d
        return d.addCallback(self._queueMissing, payload, isBinary, framed, framedBinary)

    def _queueMissing(
        self, result: PushResult, payload: bytes, isBinary: bool, framed: bytes, framedBinary: bool
    ) -> Deferred[PushResult] | PushResult:
        missing = [uid for uid, count in result.uids.items() if count == 0]
        if not missing:
            return result
        jobs = [
            self._serial.run(uid, lambda uid=uid: self._queueOne(uid, payload, isBinary, framed, framedBinary))
            for uid in missing
        ]
        from twisted.internet.defer import gatherResults

        def combine(outcomes: list[tuple[str, int | str]]) -> PushResult:
            uids = dict(result.uids)
            queued, refused = [], []
            delivered = result.delivered
            for uid, outcome in outcomes:
                if outcome == "queued":
                    queued.append(uid)
                elif outcome == "full":
                    refused.append(uid)
                else:
                    uids[uid] = int(outcome)
                    delivered += int(outcome)
            return PushResult(delivered, uids, tuple(queued), tuple(refused))

        return gatherResults(jobs, consumeErrors=True).addCallback(combine)

    def _queueOne(
        self, uid: str, payload: bytes, isBinary: bool, framed: bytes, framedBinary: bool
    ) -> Deferred[tuple[str, int | str]]:
        # the uid may have connected while this job waited its turn
        if self.registry.sessionsOf(uid):
            return self.broker.publish(Envelope(ToUids((uid,)), framed, framedBinary)).addCallback(
                lambda result: (uid, result.delivered)
            )
        assert self.store is not None and self.offline is not None
        now = self._reactor.seconds()

        def known(seen: bool) -> Deferred[tuple[str, int | str]] | tuple[str, int]:
            if not seen:
                return (uid, 0)
            return self.store.queueOffline(uid, payload, isBinary, self.offline, now).addCallback(stored)

        def stored(ok: bool) -> tuple[str, str]:
            if ok:
                self.queuedPushes += 1
                if self._waiting is not None:
                    self._waiting.add(uid)
                return (uid, "queued")
            self.refusedPushes += 1
            return (uid, "full")

        if uid in self._seen:
            return known(True)
        return self.store.wasSeen(uid, now).addCallback(known)

    def publishToChannel(self, channel: str, data: bytes) -> Deferred[PushResult]:
        """
        Append C{data} (JSON text) to the channel's history if it keeps one,
        then deliver it to the subscribers with its offset.
        """
        options = self.rules.match(channel)
        if options.history and self.store is not None:
            d = self.store.append(channel, data, False, options.retention, self._reactor.seconds())
            return d.addCallback(self._publishStored, channel, data)
        return self._publishStored(None, channel, data)

    def _publishStored(self, stored: Any, channel: str, data: bytes) -> Deferred[PushResult]:
        offset = stored.offset if stored is not None else None
        epoch = stored.epoch if stored is not None else None
        wire = channelproto.encodeMessage(channel, offset, epoch, data)
        return self.broker.publish(Envelope(ToChannel(channel), wire, False, offset)).addCallback(
            lambda result: PushResult(result.delivered, offset=offset, epoch=epoch)
        )

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
        The broker's counters and the hub's own.
        """

        def add(stats: dict[str, Any]) -> dict[str, Any]:
            stats = dict(stats)
            stats["offlineQueued"] = self.queuedPushes
            stats["offlineRefused"] = self.refusedPushes
            stats["offlineDelivered"] = self.deliveredOffline
            return stats

        return self.broker.stats().addCallback(add)

    # -- the channels protocol --------------------------------------------------

    def request(self, session: ISession, request: channelproto.Request) -> Deferred[dict[str, Any]]:
        """
        Carry out a client request; errors are L{RequestError}s.
        """
        handler = getattr(self, "_op_" + request.op)
        return maybeDeferred(handler, session, request)

    def _op_ping(self, session: ISession, request: channelproto.Request) -> dict[str, Any]:
        return {}

    def _authorize(self, session: ISession, channel: str, options: NamespaceOptions, publish: bool) -> Deferred[bool]:
        identity = session.identity
        if publish and not options.publish:
            return succeed(False)
        if not publish and (options.public or channel == f"user:{identity.uid}"):
            return succeed(True)
        if self._authorizer is not None:
            check = self._authorizer.mayPublish if publish else self._authorizer.maySubscribe
            return maybeDeferred(check, identity, channel).addCallback(bool)
        return succeed(options.public or identityMaySubscribe(identity, channel))

    def _op_subscribe(self, session: ISession, request: channelproto.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        assert channel is not None
        if session.subscriptions is not None and channel in session.subscriptions:
            raise RequestError("already_subscribed", f"already subscribed to {channel!r}")
        if session.subscriptions is not None and len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise RequestError("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        options = self.rules.match(channel)
        return self._authorize(session, channel, options, False).addCallback(
            self._subscribeAllowed, session, request, options
        )

    def _subscribeAllowed(
        self, allowed: bool, session: ISession, request: channelproto.Request, options: NamespaceOptions
    ) -> Deferred[dict[str, Any]] | dict[str, Any]:
        channel = request.channel
        assert channel is not None
        if not allowed:
            raise RequestError("forbidden", f"not allowed to subscribe to {channel!r}")
        if not session.isOpen():
            return {}
        if session.subscriptions is None:
            session.subscriptions = {}
        if channel in session.subscriptions:
            raise RequestError("already_subscribed", f"already subscribed to {channel!r}")
        subscription = Subscription(session, channel)
        session.subscriptions[channel] = subscription
        if options.presence and not self.registry.presenceOf(channel).get(session.uid):
            self._announce("join", channel, session.uid)
        self.registry.subscribe(subscription)
        if not (options.history and self.store is not None):
            subscription.release(0)
            result: dict[str, Any] = {"channel": channel}
            if request.since is not None:
                result["recovered"] = False
            return result
        return self.store.history(channel, request.since, self._reactor.seconds()).addCallback(
            self._historyRead, subscription, request
        )

    def _historyRead(self, history: Any, subscription: Subscription, request: channelproto.Request) -> dict[str, Any]:
        channel = subscription.channel
        result: dict[str, Any] = {"channel": channel, "epoch": history.epoch}
        if request.since is not None and history.recovered:
            frames = [
                Frame(channelproto.encodeMessage(channel, m.offset, history.epoch, m.payload), offset=m.offset)
                for m in history.messages
            ]
            subscription.release(request.since.offset, frames)
            result.update(offset=max(history.offset, request.since.offset), recovered=True, missed=len(frames))
        else:
            held = subscription.heldOffsets()
            position = min(held) - 1 if held else history.offset
            subscription.release(position)
            result["offset"] = position
            if request.since is not None:
                result["recovered"] = False
        return result

    def _op_unsubscribe(self, session: ISession, request: channelproto.Request) -> dict[str, Any]:
        subscription = (session.subscriptions or {}).pop(request.channel, None)
        if subscription is None:
            raise RequestError("not_subscribed", f"not subscribed to {request.channel!r}")
        self._unsubscribe(subscription)
        return {"channel": request.channel}

    def _unsubscribe(self, subscription: Subscription) -> None:
        if self.registry.unsubscribe(subscription) and self.rules.match(subscription.channel).presence:
            self._announce("leave", subscription.channel, subscription.uid)

    def _announce(self, kind: str, channel: str, uid: str) -> None:
        wire = channelproto.encodePresenceEvent(kind, channel, uid)
        self.broker.publish(Envelope(ToChannel(channel), wire)).addErrback(
            lambda f: self.log.failure("announcing {kind} in {channel} failed", f, kind=kind, channel=channel)
        )

    def _op_publish(self, session: ISession, request: channelproto.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        assert channel is not None and request.data is not None
        options = self.rules.match(channel)

        def allowed(ok: bool) -> Deferred[dict[str, Any]]:
            if not ok:
                raise RequestError("forbidden", f"not allowed to publish to {channel!r}")
            return self.publishToChannel(channel, request.data).addCallback(
                lambda r: {"channel": channel, "offset": r.offset, "epoch": r.epoch, "delivered": r.delivered}
            )

        return self._authorize(session, channel, options, True).addCallback(allowed)

    def _op_presence(self, session: ISession, request: channelproto.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        assert channel is not None
        options = self.rules.match(channel)
        if not options.presence:
            raise RequestError("presence_disabled", f"presence is not enabled for {channel!r}")

        def allowed(ok: bool) -> Deferred[dict[str, Any]]:
            if not ok:
                raise RequestError("forbidden", f"not allowed to see who is in {channel!r}")
            return self.presence(channel)

        return self._authorize(session, channel, options, False).addCallback(allowed)
