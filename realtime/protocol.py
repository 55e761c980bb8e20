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

from realtime import channelproto, closecodes
from realtime.channels import RequestError
from realtime.delivery import Fanout, Frame
from realtime.hub import Hub
from realtime.interfaces import IAuthenticator, IRoutingStrategy, ISession
from realtime.strict import StrictProtocol, strictOptions
from realtime.timers import Timeout, TimeoutWheel
from realtime.values import (
    Accept,
    AwaitFirstMessage,
    Call,
    Close,
    Deliver,
    Deny,
    HandshakeRequest,
    Identity,
    Refuse,
    Reply,
)
from realtime.writer import TurnWriter, sendNow

#: seconds an asynchronous authenticator may take to decide a handshake
HANDSHAKE_TIMEOUT = 10.0

#: what Autobahn keeps of the opening handshake, not needed once the
#: connection is authenticated: dropped to keep an idle connection small
HANDSHAKE_ATTRIBUTES = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_request_uri",
    "http_request_params",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
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
    _held: list[Frame] | None = None
    _outgoing: list[bytes] | None = None
    subscriptions: dict[str, Any] | None = None

    # -- handshake -----------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Any:
        """
        Ask the authenticator; a C{Deny} becomes an HTTP error response, so a
        refused client never holds an open socket.
        """
        self.handshake = handshakeRequest(request, getattr(self.transport.getPeer(), "host", ""))
        decision = self.factory.authenticator.checkHandshake(self.handshake)
        if isinstance(decision, Deferred):
            # Autobahn's own handshake timer is off (the front port already
            # read the whole head); a slow authenticator gets this one
            self._authTimeout = self.factory.wheel.schedule(HANDSHAKE_TIMEOUT, self._handshakeTimedOut)
            return decision.addCallback(self._handshakeDecided)
        return self._handshakeDecided(decision)

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
        self._forgetHandshake()
        self._registered = True
        self.factory.sessionOpened(self)

    def _forgetHandshake(self) -> None:
        self.handshake = None
        for name in HANDSHAKE_ATTRIBUTES:
            self.__dict__.pop(name, None)

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
            elif isinstance(action, Call):
                request = action.request
                self.factory.hub.request(self, request).addCallbacks(
                    self._cbAnswer, self._ebAnswer, callbackArgs=(request.id,), errbackArgs=(request.id,)
                )
            else:
                raise TypeError(f"unknown routing action {action!r}")

    def _cbAnswer(self, result: dict[str, Any], requestId: Any) -> None:
        if self.state == _STATE_OPEN:
            self.sendMessage(channelproto.encodeReply(requestId, result), False)

    def _ebAnswer(self, failure: Failure, requestId: Any) -> None:
        if failure.check(RequestError):
            code, message = failure.value.code, failure.value.message
        else:
            self._log.failure("request {id!r} from {session} failed", failure, id=requestId, session=self.sessionId)
            code, message = "internal", "internal error"
        if self.state == _STATE_OPEN:
            self.sendMessage(channelproto.encodeError(requestId, code, message), False)

    # -- ISession ------------------------------------------------------------

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Queue C{frame} on the transport, unless closing or hopelessly behind.
        """
        if self.state != _STATE_OPEN or self._dropped:
            return False
        if self._held is not None:
            self._held.append(frame)
            return True
        if self._paused:
            self._pausedBytes += len(frame.wire)
            if self._pausedBytes > self.factory.maxQueuedBytes:
                self._dropSlowConsumer()
                return False
        self.factory.writer.write(self, frame.wire)
        return True

    # -- writing: one send per connection per reactor turn ---------------------

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Everything Autobahn writes (handshake responses, replies, pongs,
        close frames) joins the frames of this turn, in order.
        """
        if sync or chopsize:
            self.flushOutgoing()
            WebSocketServerProtocol.sendData(self, data, sync, chopsize)
        else:
            self.factory.writer.write(self, data)

    def flushOutgoing(self) -> None:
        """
        Send what this turn queued, with one write.
        """
        outgoing, self._outgoing = self._outgoing, None
        if outgoing and self.transport is not None:
            sendNow(self.transport, outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _closeConnection(self, abort: bool = False) -> None:
        """
        What is queued goes out before the transport closes (an abort then
        discards whatever the kernel did not take at once).
        """
        self.flushOutgoing()
        WebSocketServerProtocol._closeConnection(self, abort)

    def isOpen(self) -> bool:
        """
        Whether frames can still be written.
        """
        return self.state == _STATE_OPEN and not self._dropped

    def holdDeliveries(self) -> None:
        """
        Hold frames back until C{releaseDeliveries}.
        """
        if self._held is None:
            self._held = []

    def releaseDeliveries(self, first: Iterable[Frame] = ()) -> None:
        """
        Write C{first}, then what was held, and stop holding.
        """
        held, self._held = self._held or [], None
        for frame in first:
            self.sendPrepared(frame)
        for frame in held:
            self.sendPrepared(frame)

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
        self._outgoing = None
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
        hub: Hub,
        fanout: Fanout,
        wheel: TimeoutWheel,
        writer: TurnWriter,
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
        self.hub = hub
        self.registry = hub.registry
        self.fanout = fanout
        self.wheel = wheel
        self.writer = writer
        self.maxQueuedBytes = maxQueuedBytes
        self.slowConsumerTimeout = slowConsumerTimeout
        self._sessionPrefix = sessionPrefix
        self._sessionCounter = 0
        self.authFailures: dict[str, int] = {}
        self.slowConsumers = 0
        self.openedSessions = 0

    _configured: type | None = None

    def setProtocolOptions(self, **options: Any) -> None:
        """
        Autobahn's, then forget the configured protocol class.
        """
        WebSocketServerFactory.setProtocolOptions(self, **options)
        self._configured = None

    def buildProtocol(self, addr: Any) -> RealtimeServerProtocol:
        """
        A protocol of a class that carries this factory's options itself.

        Autobahn copies some 30 options from the factory into every
        protocol instance (and pretty-prints them, for a debug log that is
        off); a subclass holding them as class attributes makes both
        unnecessary: less memory per idle connection, faster handshakes.
        """
        configured = self._configured
        if configured is None:
            names = WebSocketServerProtocol.CONFIG_ATTRS
            # a function stored on a class would become a method: keep
            # callables (perMessageCompressionAccept) plain
            attributes: dict[str, Any] = {
                name: staticmethod(value) if callable(value) else value
                for name, value in ((name, getattr(self, name)) for name in names)
            }
            attributes["CONFIG_ATTRS"] = ()
            configured = self._configured = type(self.protocol.__name__, (self.protocol,), attributes)
        protocol = configured()
        protocol.factory = self
        return protocol

    def nextSessionId(self) -> str:
        """
        A session id unique within this process.
        """
        self._sessionCounter += 1
        return f"{self._sessionPrefix}{self._sessionCounter:x}"

    def sessionOpened(self, session: ISession) -> None:
        """
        An authenticated session joins the hub.
        """
        self.openedSessions += 1
        self.hub.sessionOpened(session)

    def sessionClosed(self, session: ISession) -> None:
        """
        A session leaves the hub.
        """
        self.hub.sessionClosed(session)

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
