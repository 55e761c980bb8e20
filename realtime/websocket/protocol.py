"""
The Autobahn shell: turns WebSocket events into calls on the pure core.

C{onConnect} asks the authenticator; C{onMessage} asks the routing strategy
(or, before authentication, the authenticator again); the actions they answer
with, at once or by a Deferred, are carried out here and nowhere else, in
the order of the messages (C{realtime.websocket.routed}).  The protocol
instance is itself the L{ISession} the registry indexes, so an open
connection costs one object.
"""

from __future__ import annotations

from typing import Any, Iterable

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime import closecodes
from realtime.core import channelwire as channelproto
from realtime.core.jsoncodec import encode
from realtime.core.limits import RETRY_AFTER, LimitExceeded, TokenBucket
from realtime.delivery.fanout import Frame
from realtime.delivery.timers import Timeout
from realtime.interfaces import IFirstMessageAuthenticator, ISession
from realtime.values import (
    Accept,
    AwaitFirstMessage,
    Close,
    Deliver,
    Deny,
    HandshakeRequest,
    Identity,
    Refuse,
    Reply,
)
from realtime.websocket.handshake import Upgrade, upgradeRequest
from realtime.websocket.routed import RouteQueue, answerNow
from realtime.websocket.sending import SessionOutput, validCloseCode

#: seconds an asynchronous authenticator may take to decide a handshake
HANDSHAKE_TIMEOUT = 10.0

#: how many messages a client may send while its first message is still being
#: checked by an asynchronous authenticator; they are handled, in order, once
#: it is accepted
MAX_EARLY_MESSAGES = 32

_STATE_OPEN = WebSocketServerProtocol.STATE_OPEN

#: C{_clientKey} of a connection the limits have not counted
_UNCOUNTED = object()


def handshakeRequest(request: ConnectionRequest, peerHost: str = "") -> HandshakeRequest:
    """
    Copy what Autobahn parsed into our own value, so plugins never see Autobahn.
    """
    return HandshakeRequest(
        path=request.path,
        params=request.params,
        headers=request.headers,
        protocols=tuple(request.protocols),
        origin=request.origin,
        peer=request.peer,
        peerHost=peerHost,
    )


def errorFrame(code: str, message: str) -> bytes:
    """
    The text of an error frame: C{{"type": "error", "code": ..., "message": ...}}.
    """
    return encode({"type": "error", "code": code, "message": message})


@implementer(ISession, IPushProducer)
class RealtimeServerProtocol(SessionOutput):
    """
    One WebSocket connection: authentication, routing, and the session the
    backend pushes to.
    """

    #: ours; C{self.log} is Autobahn's txaio logger, whose level
    #: C{txaio.set_global_log_level} controls
    _log = Logger()

    sessionId: str = ""
    identity: Identity | None = None
    uid: str = ""
    handshake: HandshakeRequest | None = None
    _authTimeout: Timeout | None = None
    _authPending: list[tuple[bytes, bool]] | None = None
    _awaitingFirst = False
    _registered = False
    #: answers of routing still waiting, or waited behind (in order)
    _routes: RouteQueue | None = None
    #: the key C{factory.limits} counts this connection under, once admitted
    _clientKey: Any = _UNCOUNTED
    _bucket: TokenBucket | None = None

    # -- handshake -----------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Any:
        """
        Autobahn's path (C{realtime.websocket._autobahn.opening} takes the
        common requests).
        """
        return self.decideHandshake(handshakeRequest(request, getattr(self.transport.getPeer(), "host", "")))

    def decideUpgrade(self, upgrade: Upgrade) -> Any:
        """
        The fast path's (C{realtime.websocket._autobahn.opening}).
        """
        return self.decideHandshake(
            upgradeRequest(upgrade, self.peer or "", getattr(self.transport.getPeer(), "host", ""))
        )

    def decideHandshake(self, handshake: HandshakeRequest) -> Any:
        """
        Check the origin (403 for a page C{--allowed-origin} does not admit),
        then ask the authenticator; a C{Deny} becomes an HTTP error
        response, so a refused client never holds an open socket.
        """
        self.handshake = handshake
        if handshake.origin and not self.factory.origins.allows(handshake.origin):
            self.factory.countAuthFailure("origin not allowed")
            raise ConnectionDeny(403, "origin not allowed")
        self._admit(handshake)
        decision = self.factory.authenticator.checkHandshake(handshake)
        if isinstance(decision, Deferred):
            # Autobahn's own handshake timer is off (the front port already
            # read the whole head); a slow authenticator gets this one
            self._authTimeout = self.factory.wheel.schedule(HANDSHAKE_TIMEOUT, self._handshakeTimedOut)
            return decision.addCallback(self._handshakeDecided)
        return self._handshakeDecided(decision)

    def _admit(self, handshake: HandshakeRequest) -> None:
        """
        Count this connection against the connection limits before anything
        else is spent on it; over one, refuse the upgrade (503 or 429).
        """
        try:
            self._clientKey = self.factory.limits.admit(handshake.peerHost, handshake.headers.get("x-forwarded-for"))
        except LimitExceeded as e:
            self._refuseForLimit(e)

    def _refuseForLimit(self, exceeded: LimitExceeded) -> None:
        # the refusal (on either handshake path) says when to come back
        self.refusalHeaders = (("Retry-After", str(RETRY_AFTER)),)
        raise ConnectionDeny(exceeded.status, exceeded.message)

    def _handshakeTimedOut(self) -> None:
        self._authTimeout = None
        self.factory.countAuthFailure("handshake timeout")
        self.failHandshake("authentication took too long", 503)

    def _handshakeDecided(self, decision: object) -> str | None:
        if self._authTimeout is not None:
            self._authTimeout.cancel()
            self._authTimeout = None
        elif self.state != WebSocketServerProtocol.STATE_CONNECTING:
            raise ConnectionDeny(503, "authentication took too long")
        if isinstance(decision, Accept):
            try:
                self.factory.limits.checkUid(self.factory.registry, decision.identity.uid)
            except LimitExceeded as e:
                self._refuseForLimit(e)
            self.identity = decision.identity
            self.uid = decision.identity.uid
            return self._chosenSubprotocol(decision.identity.subprotocol)
        if isinstance(decision, AwaitFirstMessage):
            if not IFirstMessageAuthenticator.providedBy(self.factory.authenticator):
                raise TypeError("authenticator answered AwaitFirstMessage but does not provide IFirstMessageAuthenticator")
            self._awaitingFirst = True
            self._firstMessageTimeout = decision.timeout
            return self._chosenSubprotocol(decision.subprotocol)
        if isinstance(decision, Deny):
            self.factory.countAuthFailure(decision.reason)
            raise ConnectionDeny(decision.code, decision.reason)
        raise TypeError(f"authenticator answered {decision!r}, not Accept/Deny/AwaitFirstMessage")

    def _chosenSubprotocol(self, subprotocol: str | None) -> str | None:
        offered = self.handshake.protocols if self.handshake is not None else ()
        if subprotocol is not None and subprotocol not in offered:
            raise TypeError(f"authenticator chose subprotocol {subprotocol!r}, which the client did not offer")
        return subprotocol

    def onOpen(self) -> None:
        """
        Join the registry, or start the first-message clock.
        """
        self.sessionId = self.factory.nextSessionId()
        self._lastHeard = self.factory.clock.seconds()
        self.transport.registerProducer(self, True)
        if self._awaitingFirst:
            self._authTimeout = self.factory.wheel.schedule(self._firstMessageTimeout, self._authTimedOut)
        else:
            self._join()

    def _join(self) -> None:
        asked = self.handshake is not None and self.handshake.param("identity") is not None
        self._forgetHandshake()
        try:
            # checked again: another connection of the uid may have joined
            # since the handshake
            self.factory.limits.checkUid(self.factory.registry, self.uid)
        except LimitExceeded as e:
            self.close(closecodes.TOO_MANY_CONNECTIONS, e.message)
            return
        self._registered = True
        if asked:
            # first on the wire: before offline pushes, history or relayed text
            self.sendMessage(channelproto.encodeIdentity(self.uid), False)
        self.factory.sessionOpened(self)

    def _forgetHandshake(self) -> None:
        self.handshake = None
        self.forgetOpeningHandshake()

    def _authTimedOut(self) -> None:
        self._authTimeout = None
        if self.state == _STATE_OPEN and self._awaitingFirst:
            self.factory.countAuthFailure("timeout")
            self.close(closecodes.AUTH_TIMEOUT, "authentication timeout")

    # -- messages ------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Route a message, or authenticate with it if it is the first one;
        a client over C{--client-rate} is closed instead.
        """
        if self.state != _STATE_OPEN:
            # sent after our close frame: not acted on
            return
        if self._awaitingFirst:
            self._firstMessage(payload, isBinary)
            return
        bucket = self._bucket
        if bucket is None and self.factory.clientRate is not None:
            bucket = self._bucket = TokenBucket(self.factory.clientRate, self.factory.clock)
        if bucket is not None and bucket.take():
            self.factory.limits.refused["rate"] += 1
            self.close(closecodes.RATE_LIMITED, "rate limited: too many messages")
            return
        routes = self._routes
        try:
            answer = self.factory.strategy.route(self, payload, isBinary, self.factory.registry)
            if routes is None:
                # (a tuple, what most strategies answer, skips the ABC check
                # isinstance makes of Deferred, an Awaitable)
                if type(answer) is not tuple and isinstance(answer, Deferred):
                    answer = answerNow(answer)
                    if isinstance(answer, Deferred):
                        routes = self._routes = RouteQueue(self.perform, self._routeFailed, self.isOpen, self._routesDrained)
                        routes.add(answer)
                        return
                    if isinstance(answer, Failure):
                        self._routeFailed(answer)
                        return
                self.perform(answer)
                return
            if not routes.add(answer):
                self.close(closecodes.POLICY_VIOLATION, "too many messages waiting for answers")
        except Exception:
            self._routeFailed(Failure())

    def _routesDrained(self) -> None:
        # every answer is out: an idle connection keeps no queue
        self._routes = None

    def _routeFailed(self, failure: Failure) -> None:
        self._log.failure("routing a message from {session} failed", failure, session=self.sessionId)
        if self.state == _STATE_OPEN:
            self.close(closecodes.INTERNAL_ERROR, "internal error")

    def _firstMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._authPending is not None:
            if len(self._authPending) >= MAX_EARLY_MESSAGES:
                self.close(closecodes.POLICY_VIOLATION, "too many messages before authentication")
            else:
                self._authPending.append((payload, isBinary))
            return
        try:
            decision = self.factory.authenticator.checkFirstMessage(self.handshake, payload, isBinary)
        except Exception:
            self._firstMessageFailed(Failure())
            return
        if isinstance(decision, Deferred):
            self._authPending = []
            decision.addCallbacks(self._firstMessageDecided, self._firstMessageFailed)
        else:
            self._firstMessageDecided(decision)

    def _firstMessageDecided(self, decision: object) -> None:
        early, self._authPending = self._authPending, None
        if self.state != _STATE_OPEN:
            return
        if isinstance(decision, Accept):
            self._awaitingFirst = False
            if self._authTimeout is not None:
                self._authTimeout.cancel()
                self._authTimeout = None
            self.identity = decision.identity
            self.uid = decision.identity.uid
            self._join()
            for payload, isBinary in early or ():
                if self.state == _STATE_OPEN:
                    self.onMessage(payload, isBinary)
        elif isinstance(decision, Deny):
            self.factory.countAuthFailure(decision.reason)
            self.close(validCloseCode(decision.code, closecodes.AUTH_FAILED), decision.reason)
        else:
            self._firstMessageFailed(Failure(TypeError(f"authenticator answered {decision!r}, not Accept/Deny")))

    def _firstMessageFailed(self, failure: Failure) -> None:
        self._authPending = None
        self._log.failure("authenticating {peer} failed", failure, peer=self.peer)
        if self.state == _STATE_OPEN:
            self.close(closecodes.INTERNAL_ERROR, "authentication error")

    def perform(self, actions: Iterable[object]) -> None:
        """
        Carry out what a routing strategy decided.
        """
        for action in actions:
            if isinstance(action, Reply):
                self.sendMessage(action.payload, action.isBinary)
            elif isinstance(action, Deliver):
                self.factory.fanout.deliver(action.sessions, Frame(action.payload, action.isBinary))
            elif isinstance(action, Refuse):
                self.sendMessage(errorFrame(action.code, action.message), False)
            elif isinstance(action, Close):
                self.close(validCloseCode(action.code, closecodes.POLICY_VIOLATION), action.reason)
            else:
                raise TypeError(f"unknown routing action {action!r}")

    # -- teardown ------------------------------------------------------------

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """
        Leave every index and cancel every timer this connection owns.
        """
        self.stopOutput()
        if self._authTimeout is not None:
            self._authTimeout.cancel()
            self._authTimeout = None
        if self._registered:
            self._registered = False
            self.factory.sessionClosed(self)
        key, self._clientKey = self._clientKey, _UNCOUNTED
        if key is not _UNCOUNTED:
            self.factory.limits.release(key)
