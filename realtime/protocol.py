"""
The Autobahn shell: turns WebSocket events into calls on the pure core.

C{onConnect} asks the authenticator; C{onMessage} asks the routing strategy
(or, before authentication, the authenticator again); the actions they answer
with are carried out here and nowhere else.  The protocol instance is itself
the L{ISession} the registry indexes, so an open connection costs one object.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime import closecodes
from realtime.delivery import Fanout, Frame
from realtime.interfaces import IAuthenticator, IRoutingStrategy, ISession, ISessionRegistry
from realtime.strict import StrictProtocol, strictOptions
from realtime.timers import Timeout, TimeoutWheel
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

#: how many messages a client may send while its first message is still being
#: checked by an asynchronous authenticator; they are handled, in order, once
#: it is accepted
MAX_EARLY_MESSAGES = 32

_STATE_OPEN = WebSocketServerProtocol.STATE_OPEN


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
    return json.dumps({"type": "error", "code": code, "message": message}).encode("utf-8")


def validCloseCode(code: int, fallback: int) -> int:
    """
    C{code} if a server may send it in a close frame, else C{fallback}.
    """
    if code == 1000 or 3000 <= code <= 4999 or code in (1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013):
        return code
    return fallback


@implementer(ISession, IPushProducer)
class RealtimeServerProtocol(StrictProtocol, WebSocketServerProtocol):
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
    _paused = False
    _pausedBytes = 0
    _pauseTimeout: Timeout | None = None
    _dropped = False

    # -- handshake -----------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Any:
        """
        Ask the authenticator; a C{Deny} becomes an HTTP error response, so a
        refused client never holds an open socket.
        """
        self.handshake = handshakeRequest(request, getattr(self.transport.getPeer(), "host", ""))
        decision = self.factory.authenticator.checkHandshake(self.handshake)
        if isinstance(decision, Deferred):
            return decision.addCallback(self._handshakeDecided)
        return self._handshakeDecided(decision)

    def _handshakeDecided(self, decision: object) -> str | None:
        if isinstance(decision, Accept):
            self.identity = decision.identity
            self.uid = decision.identity.uid
            return self._chosenSubprotocol(decision.identity.subprotocol)
        if isinstance(decision, AwaitFirstMessage):
            self._awaitingFirst = True
            self._firstMessageTimeout = decision.timeout
            return self._chosenSubprotocol(decision.subprotocol)
        if isinstance(decision, Deny):
            self.factory.countAuthFailure(decision.reason)
            raise ConnectionDeny(decision.code, decision.reason)
        raise TypeError(f"authenticator answered {decision!r}, not Accept/Deny/AwaitFirstMessage")

    def _chosenSubprotocol(self, subprotocol: str | None) -> str | None:
        if subprotocol is not None and subprotocol not in self.handshake.protocols:
            raise TypeError(f"authenticator chose subprotocol {subprotocol!r}, which the client did not offer")
        return subprotocol

    def onOpen(self) -> None:
        """
        Join the registry, or start the first-message clock.
        """
        self.sessionId = self.factory.nextSessionId()
        self.transport.registerProducer(self, True)
        if self._awaitingFirst:
            self._authTimeout = self.factory.wheel.schedule(self._firstMessageTimeout, self._authTimedOut)
        else:
            self._join()

    def _join(self) -> None:
        self._registered = True
        self.factory.sessionOpened(self)

    def _authTimedOut(self) -> None:
        self._authTimeout = None
        if self.state == _STATE_OPEN and self._awaitingFirst:
            self.factory.countAuthFailure("timeout")
            self.close(closecodes.AUTH_TIMEOUT, "authentication timeout")

    # -- messages ------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Route a message, or authenticate with it if it is the first one.
        """
        if self._awaitingFirst:
            self._firstMessage(payload, isBinary)
            return
        try:
            actions = self.factory.strategy.route(self, payload, isBinary, self.factory.registry)
            self.perform(actions)
        except Exception:
            self._log.failure("routing a message from {session} failed", session=self.sessionId)
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

    # -- ISession ------------------------------------------------------------

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Queue C{frame} on the transport, unless closing or hopelessly behind.
        """
        if self.state != _STATE_OPEN or self._dropped:
            return False
        if self._paused:
            self._pausedBytes += len(frame.wire)
            if self._pausedBytes > self.factory.maxQueuedBytes:
                self._dropSlowConsumer()
                return False
        self.transport.write(frame.wire)
        return True

    def close(self, code: int = closecodes.NORMAL, reason: str = "") -> None:
        """
        Start the closing handshake.

        Unlike Autobahn's C{sendClose}, this may send the RFC 6455 codes a
        server needs (1001, 1008, 1011, 1013), not only 1000 and 3000-4999.
        """
        if self.state == _STATE_OPEN:
            code = validCloseCode(code, closecodes.POLICY_VIOLATION)
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123) if reason else None)

    # -- IPushProducer: the transport tells us when the peer stops reading ---

    def pauseProducing(self) -> None:
        """
        The send buffer passed its high-water mark; start counting.
        """
        if not self._paused:
            self._paused = True
            self._pausedBytes = 0
            self._pauseTimeout = self.factory.wheel.schedule(
                self.factory.slowConsumerTimeout, self._dropSlowConsumer
            )

    def resumeProducing(self) -> None:
        """
        The buffer drained.
        """
        self._paused = False
        self._pausedBytes = 0
        if self._pauseTimeout is not None:
            self._pauseTimeout.cancel()
            self._pauseTimeout = None

    def stopProducing(self) -> None:
        """
        The transport is going away; C{onClose} cleans up.
        """

    def _dropSlowConsumer(self) -> None:
        self._pauseTimeout = None
        if self._dropped or self.state != _STATE_OPEN:
            return
        self._dropped = True
        self.factory.countSlowConsumer()
        self._log.info(
            "dropping slow consumer {session} (uid {uid}, {peer})",
            session=self.sessionId,
            uid=self.uid,
            peer=self.peer,
        )
        self.close(closecodes.SLOW_CONSUMER, "slow consumer")

    # -- teardown ------------------------------------------------------------

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """
        Leave every index and cancel every timer this connection owns.
        """
        if self._authTimeout is not None:
            self._authTimeout.cancel()
            self._authTimeout = None
        if self._pauseTimeout is not None:
            self._pauseTimeout.cancel()
            self._pauseTimeout = None
        if self._registered:
            self._registered = False
            self.factory.sessionClosed(self)


class RealtimeServerFactory(WebSocketServerFactory):
    """
    Holds what every connection shares: the plugins, the registry and the
    fan-out.
    """

    protocol = RealtimeServerProtocol
    noisy = False

    def __init__(
        self,
        authenticator: IAuthenticator,
        strategy: IRoutingStrategy,
        registry: ISessionRegistry,
        fanout: Fanout,
        wheel: TimeoutWheel,
        *,
        server: str = "realtime",
        maxQueuedBytes: int = 4 * 1024 * 1024,
        maxMessageSize: int = 0,
        slowConsumerTimeout: float = 30.0,
        sessionPrefix: str = "",
    ) -> None:
        WebSocketServerFactory.__init__(self, server=server)
        self.maxMessageSize = maxMessageSize
        self.setProtocolOptions(**strictOptions(maxMessageSize))
        self.authenticator = authenticator
        self.strategy = strategy
        self.registry = registry
        self.fanout = fanout
        self.wheel = wheel
        self.maxQueuedBytes = maxQueuedBytes
        self.slowConsumerTimeout = slowConsumerTimeout
        self._sessionPrefix = sessionPrefix
        self._sessionCounter = 0
        self.authFailures: dict[str, int] = {}
        self.slowConsumers = 0
        self.openedSessions = 0

    def nextSessionId(self) -> str:
        """
        A session id unique within this process.
        """
        self._sessionCounter += 1
        return f"{self._sessionPrefix}{self._sessionCounter:x}"

    def sessionOpened(self, session: ISession) -> None:
        """
        An authenticated session joins the registry.
        """
        self.openedSessions += 1
        self.registry.add(session)

    def sessionClosed(self, session: ISession) -> None:
        """
        A session leaves the registry.
        """
        self.registry.discard(session)

    def countAuthFailure(self, reason: str) -> None:
        """
        Count a refused authentication by its reason.
        """
        self.authFailures[reason] = self.authFailures.get(reason, 0) + 1

    def countSlowConsumer(self) -> None:
        """
        Count a session dropped for not reading.
        """
        self.slowConsumers += 1
