"""
The channels protocol's requests, carried out: subscribe (with the seam
between history and live messages), unsubscribe, publish, presence, ping,
and who may do which.  Each session's subscriptions are kept here, by
session id, not on the session: a session is a connection and nothing more,
and a strategy other than C{--routing channels} may use the service too
(through C{IRoutingContext}).

A subscription is indexed before its history is read, holding live
messages back; when the history arrives it is written, then the held
messages with offsets not already written (C{realtime.core.subscription}).  So a
message published at any moment of a resume is delivered exactly once.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Collection

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from realtime.core import channelwire
from realtime.core.namespaces import NamespaceOptions, NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.core.subscription import Subscription
from realtime.delivery.fanout import Frame
from realtime.interfaces import IBroker, IChannelAuthorizer, IChannelService, IMessageStore, ISession
from realtime.values import Envelope, Identity, PushResult, ToChannel

#: channels one connection may subscribe to
MAX_SUBSCRIPTIONS = 512


class RequestError(Exception):
    """
    A channels request refused with an error code from
    C{channelwire.ERRORS}.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def identityMaySubscribe(identity: Identity, channel: str) -> bool:
    """
    The default policy: the identity's own channel, or one its credentials
    list (``fnmatch`` patterns).
    """
    if channel == f"user:{identity.uid}":
        return True
    return any(fnmatchcase(channel, pattern) for pattern in identity.channels)


@implementer(IChannelService)
class ChannelService:
    """
    Answers channels-protocol requests for sessions.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        registry: SessionRegistry,
        broker: IBroker,
        store: IMessageStore | None,
        rules: NamespaceRules,
        publish: Callable[[str, bytes], Deferred[PushResult]],
        authorizer: object = None,
    ) -> None:
        """
        @param publish: how a client's message reaches a channel (through
            its history: C{realtime.push.router.ChannelPublisher}).
        """
        self._reactor = reactor
        self.registry = registry
        self.broker = broker
        self.store = store
        self.rules = rules
        self._publish = publish
        self._authorizer = authorizer if IChannelAuthorizer.providedBy(authorizer) else None
        # session id -> channel -> subscription; a session's entry exists
        # from its first subscribe until it closes
        self._bySession: dict[str, dict[str, Subscription]] = {}

    def request(self, session: ISession, request: channelwire.Request) -> Deferred[dict[str, Any]]:
        """
        Carry out a client request; errors are L{RequestError}s.
        """
        handler = getattr(self, "_op_" + request.op)
        return maybeDeferred(handler, session, request)

    def subscriptionsOf(self, sessionId: str) -> Collection[str]:
        """
        The channels the session with id C{sessionId} is subscribed to.
        """
        return tuple(self._bySession.get(sessionId, ()))

    def sessionClosed(self, session: ISession) -> None:
        """
        Leave every channel, announcing leaves.
        """
        subscriptions = self._bySession.pop(session.sessionId, None)
        for subscription in (subscriptions or {}).values():
            self._unsubscribe(subscription)

    def _op_ping(self, session: ISession, request: channelwire.Request) -> dict[str, Any]:
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

    def _op_subscribe(self, session: ISession, request: channelwire.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        assert channel is not None
        subscriptions = self._bySession.get(session.sessionId, {})
        if channel in subscriptions:
            raise RequestError("already_subscribed", f"already subscribed to {channel!r}")
        if len(subscriptions) >= MAX_SUBSCRIPTIONS:
            raise RequestError("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        options = self.rules.match(channel)
        return self._authorize(session, channel, options, False).addCallback(
            self._subscribeAllowed, session, request, options
        )

    def _subscribeAllowed(
        self, allowed: bool, session: ISession, request: channelwire.Request, options: NamespaceOptions
    ) -> Deferred[dict[str, Any]] | dict[str, Any]:
        channel = request.channel
        assert channel is not None
        if not allowed:
            raise RequestError("forbidden", f"not allowed to subscribe to {channel!r}")
        if not session.isOpen():
            # closed (or closing) while being authorized: sessionClosed has
            # run or will find nothing, so nothing may be indexed now
            return {}
        subscriptions = self._bySession.get(session.sessionId)
        if subscriptions is None:
            subscriptions = self._bySession[session.sessionId] = {}
        if channel in subscriptions:
            raise RequestError("already_subscribed", f"already subscribed to {channel!r}")
        subscription = Subscription(session, channel)
        subscriptions[channel] = subscription
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

    def _historyRead(self, history: Any, subscription: Subscription, request: channelwire.Request) -> dict[str, Any]:
        channel = subscription.channel
        result: dict[str, Any] = {"channel": channel, "epoch": history.epoch}
        if request.since is not None and history.recovered:
            frames = [
                Frame(channelwire.encodeMessage(channel, m.offset, history.epoch, m.payload), False, m.offset, history.epoch)
                for m in history.messages
            ]
            subscription.release(request.since.offset, frames, history.epoch)
            result.update(offset=max(history.offset, request.since.offset), recovered=True, missed=len(frames))
        else:
            held = subscription.heldOffsets()
            position = min(held) - 1 if held else history.offset
            subscription.release(position, epoch=history.epoch)
            result["offset"] = position
            if request.since is not None:
                result["recovered"] = False
        return result

    def _op_unsubscribe(self, session: ISession, request: channelwire.Request) -> dict[str, Any]:
        channel = request.channel
        assert channel is not None
        subscription = self._bySession.get(session.sessionId, {}).pop(channel, None)
        if subscription is None:
            raise RequestError("not_subscribed", f"not subscribed to {request.channel!r}")
        self._unsubscribe(subscription)
        return {"channel": request.channel}

    def _unsubscribe(self, subscription: Subscription) -> None:
        if self.registry.unsubscribe(subscription) and self.rules.match(subscription.channel).presence:
            self._announce("leave", subscription.channel, subscription.uid)

    def _announce(self, kind: str, channel: str, uid: str) -> None:
        wire = channelwire.encodePresenceEvent(kind, channel, uid)
        maybeDeferred(self.broker.publish, Envelope(ToChannel(channel), wire)).addErrback(
            lambda f: self.log.failure("announcing {kind} in {channel} failed", f, kind=kind, channel=channel)
        )

    def _op_publish(self, session: ISession, request: channelwire.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        data = request.data
        assert channel is not None and data is not None
        options = self.rules.match(channel)

        def allowed(ok: bool) -> Deferred[dict[str, Any]]:
            if not ok:
                raise RequestError("forbidden", f"not allowed to publish to {channel!r}")
            return self._publish(channel, data).addCallback(
                lambda r: {"channel": channel, "offset": r.offset, "epoch": r.epoch, "delivered": r.delivered}
            )

        return self._authorize(session, channel, options, True).addCallback(allowed)

    def _op_presence(self, session: ISession, request: channelwire.Request) -> Deferred[dict[str, Any]]:
        channel = request.channel
        assert channel is not None
        options = self.rules.match(channel)
        if not options.presence:
            raise RequestError("presence_disabled", f"presence is not enabled for {channel!r}")

        def allowed(ok: bool) -> Deferred[dict[str, Any]]:
            if not ok:
                raise RequestError("forbidden", f"not allowed to see who is in {channel!r}")
            return self.broker.presence(channel)

        return self._authorize(session, channel, options, False).addCallback(allowed)
