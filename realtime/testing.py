"""
A test kit for plugin authors (and for this project's own tests).

Like C{treq.testing}, it lets a plugin be tested as the server runs it,
without sockets or a reactor:

    - L{verifyPlugin}: check a plugin object the way discovery and startup
      do, build it with options, and check what it built.
    - L{makeHandshakeRequest}: the C{HandshakeRequest} C{checkHandshake}
      receives, as the server builds it from a browser's handshake.
    - L{AuthenticationAttempt}: drive an authenticator through a
      connection's authentication on a C{Clock}, by the server's rules
      (timeouts, first message, messages sent while a decision is pending).
    - L{FakeSession}, L{sessionRegistry}: what a routing strategy's
      C{route} is given.

Everything here is checked against the real interfaces (C{verifyObject})
in this project's own tests, and against the real server where it models
one (the rules of L{AuthenticationAttempt}).
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import parse_qs

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from realtime import closecodes
from realtime.config.discovery import verifyBuilt
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Frame
from realtime.interfaces import (
    IAuthenticator,
    IAuthenticatorFactory,
    IFirstMessageAuthenticator,
    IRoutingContext,
    IRoutingContextUser,
    IRoutingStrategy,
    IRoutingStrategyFactory,
    ISession,
)
from realtime.values import Accept, AwaitFirstMessage, Deny, HandshakeRequest, Identity
from realtime.websocket.protocol import HANDSHAKE_TIMEOUT, MAX_EARLY_MESSAGES
from realtime.websocket.sending import validCloseCode

__all__ = (
    "verifyPlugin",
    "makeHandshakeRequest",
    "AuthenticationAttempt",
    "FakeSession",
    "sessionRegistry",
    "HANDSHAKE_TIMEOUT",
    "MAX_EARLY_MESSAGES",
)

# HANDSHAKE_TIMEOUT: seconds the server gives an asynchronous
# checkHandshake before it refuses the upgrade with HTTP 503;
# MAX_EARLY_MESSAGES: messages a client may send while its first message is
# being checked, one more closes it with POLICY_VIOLATION.  Both are the
# server's own values, re-exported for tests that reach them.

#: the key of every handshake L{makeHandshakeRequest} builds
_KEY = base64.b64encode(b"0123456789abcdef").decode()


# -- plugins -----------------------------------------------------------------


def verifyPlugin(
    plugin: Any,
    options: Mapping[str, str] | None = None,
    reactor: IReactorTime | None = None,
    *,
    context: IRoutingContext | None = None,
) -> Any:
    """
    Check C{plugin} as the server does, build it, and check what it built.

    The plugin must provide C{IPlugin} and one of C{IAuthenticatorFactory}
    or C{IRoutingStrategyFactory} (discovery's check); it is built with
    C{options} (the ``--auth-option`` pairs) on C{reactor} (a fresh C{Clock}
    by default); the result must provide the interface the factory's kind
    requires, and each optional interface it declares (for example
    C{IFirstMessageAuthenticator} or C{IWarnings}) in full, as startup
    checks it.  A routing factory that provides C{IRoutingContextUser} is
    built in C{context} (an C{IRoutingContext}), as the server builds it.

    @return: what the plugin built, to test further.
    @raise zope.interface.exceptions.Invalid: naming what is missing.
    @raise ValueError: the plugin's own refusal of C{options}.
    """
    verifyObject(IPlugin, plugin)
    if IAuthenticatorFactory.providedBy(plugin):
        verifyObject(IAuthenticatorFactory, plugin)
        required: type[Interface] = IAuthenticator
        built = plugin.buildAuthenticator(dict(options or {}), reactor if reactor is not None else Clock())
    elif IRoutingStrategyFactory.providedBy(plugin):
        verifyObject(IRoutingStrategyFactory, plugin)
        required = IRoutingStrategy
        clock = reactor if reactor is not None else Clock()
        if IRoutingContextUser.providedBy(plugin):
            verifyObject(IRoutingContextUser, plugin)
            if context is None:
                raise TypeError(f"{plugin!r} is built in a routing context: pass context=")
            verifyObject(IRoutingContext, context)
            built = plugin.buildRoutingStrategyInContext(dict(options or {}), clock, context)
        else:
            built = plugin.buildRoutingStrategy(dict(options or {}), clock)
    else:
        raise TypeError(f"{plugin!r} provides neither IAuthenticatorFactory nor IRoutingStrategyFactory")
    verifyBuilt(required, built)
    return built


# -- handshakes --------------------------------------------------------------


def makeHandshakeRequest(
    path: str = "/",
    *,
    params: Mapping[str, str | Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    protocols: Sequence[str] = (),
    origin: str | None = None,
    peer: str = "127.0.0.1",
    port: int = 50000,
    host: str = "localhost:8080",
) -> HandshakeRequest:
    """
    The C{HandshakeRequest} a browser's opening handshake becomes.

    @param path: the request path, which may carry a query (C{"/ws?uid=7"});
        C{params} are added to it.
    @param params: query parameters, each a value or a list of values, as
        the plugin reads them (already decoded: any text, which a client
        would have percent-encoded); added after those of C{path}.
    @param headers: extra request headers, any case (the server lower-cases
        names), added to the ones every WebSocket handshake carries
        (C{host}, C{upgrade}, C{connection}, C{sec-websocket-key},
        C{sec-websocket-version}, and C{sec-websocket-protocol} /
        C{origin} when given).
    @param protocols: the subprotocols the client offers, in order.
    @param origin: the C{Origin} header a browser sends.
    @param peer: the address of the socket's other end (the proxy's, when
        there is one); C{""} for a Unix socket.
    @param port: and its port.
    """
    base, _, query = path.partition("?")
    allParams = parse_qs(query) if query else {}
    for name, given in (params or {}).items():
        allParams.setdefault(name, []).extend([given] if isinstance(given, str) else given)
    allHeaders = {
        "host": host,
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": _KEY,
        "sec-websocket-version": "13",
    }
    if protocols:
        allHeaders["sec-websocket-protocol"] = ", ".join(protocols)
    if origin is not None:
        allHeaders["origin"] = origin
    allHeaders.update({name.lower(): value for name, value in (headers or {}).items()})
    if not peer:
        descriptor = "unix"
    else:
        descriptor = f"{'tcp6' if ':' in peer else 'tcp4'}:{peer}:{port}"
    return HandshakeRequest(
        path=base,
        params=allParams,
        headers=allHeaders,
        protocols=tuple(protocols),
        origin=allHeaders.get("origin", ""),
        peer=descriptor,
        peerHost=peer,
    )


# -- authentication ----------------------------------------------------------


class AuthenticationAttempt:
    """
    One connection's authentication, driven as the server drives it.

    C{checkHandshake} is asked at once.  An answer that is a Deferred must
    fire within L{HANDSHAKE_TIMEOUT} seconds of C{clock} or the upgrade is
    refused (HTTP 503).  After C{AwaitFirstMessage(timeout)} the connection
    is open but unauthenticated: the first L{send} goes to
    C{checkFirstMessage}, messages sent while that answer is pending are kept
    (up to L{MAX_EARLY_MESSAGES}) and handed to routing once accepted, and
    C{timeout} seconds without a decision close it with C{AUTH_TIMEOUT}.

    Read the outcome from C{state} and the attribute that goes with it:

        - C{"connecting"}: the handshake answer is pending.
        - C{"refused"}: C{refused} is the C{Deny} (an HTTP status).
        - C{"awaiting"}: open, waiting for (or checking) the first message.
        - C{"open"}: C{identity} is who it is, C{subprotocol} the one
          chosen; C{routed} lists C{(payload, isBinary)} of every message
          routing would now get.
        - C{"closed"}: C{closed} is C{(code, reason)}.
        - C{"failed"}: the authenticator raised, failed, or answered
          something the server refuses (a wrong value, a subprotocol the
          client did not offer, C{AwaitFirstMessage} without
          C{IFirstMessageAuthenticator}); C{failure} says what.  The server
          answers HTTP 500 at the handshake, and closes with
          C{INTERNAL_ERROR} after it.

    @ivar clock: the C{Clock} timeouts run on; advance it in the test.
    """

    def __init__(self, authenticator: Any, request: HandshakeRequest | None = None, clock: Clock | None = None) -> None:
        self.authenticator = authenticator
        self.request = request if request is not None else makeHandshakeRequest()
        self.clock = clock if clock is not None else Clock()
        self.state = "connecting"
        self.identity: Identity | None = None
        self.subprotocol: str | None = None
        self.refused: Deny | None = None
        self.closed: tuple[int, str] | None = None
        self.failure: Failure | None = None
        self.routed: list[tuple[bytes, bool]] = []
        self._timer: IDelayedCall | None = None
        self._early: list[tuple[bytes, bool]] | None = None
        self._handshake()

    def __repr__(self) -> str:
        return f"<AuthenticationAttempt {self.state} identity={self.identity} refused={self.refused} closed={self.closed}>"

    def _handshake(self) -> None:
        answer = maybeDeferred(self.authenticator.checkHandshake, self.request)
        if not answer.called:
            self._timer = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshakeTimedOut)
        answer.addCallbacks(self._handshakeDecided, self._failed)

    def _handshakeTimedOut(self) -> None:
        self._timer = None
        self.state = "refused"
        self.refused = Deny(503, "authentication took too long")

    def _stopTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _handshakeDecided(self, decision: object) -> None:
        if self.state != "connecting":
            return
        self._stopTimer()
        if isinstance(decision, Accept):
            self._choose(decision.identity.subprotocol)
            if self.state == "connecting":
                self._open(decision.identity)
        elif isinstance(decision, AwaitFirstMessage):
            if not IFirstMessageAuthenticator.providedBy(self.authenticator):
                self._wrong(f"{decision!r} from an authenticator that does not provide IFirstMessageAuthenticator")
                return
            self._choose(decision.subprotocol)
            if self.state == "connecting":
                self.state = "awaiting"
                self._timer = self.clock.callLater(decision.timeout, self._firstMessageTimedOut)
        elif isinstance(decision, Deny):
            self.state = "refused"
            self.refused = decision
        else:
            self._wrong(f"checkHandshake answered {decision!r}, not Accept/Deny/AwaitFirstMessage")

    def _choose(self, subprotocol: str | None) -> None:
        if subprotocol is not None and subprotocol not in self.request.protocols:
            self._wrong(f"subprotocol {subprotocol!r} was not offered")
        self.subprotocol = subprotocol

    def _open(self, identity: Identity) -> None:
        self.state = "open"
        self.identity = identity

    def _wrong(self, message: str) -> None:
        self._failed(Failure(TypeError(message)))

    def _failed(self, failure: Failure) -> None:
        self._stopTimer()
        self.state = "failed"
        self.failure = failure

    def _firstMessageTimedOut(self) -> None:
        self._timer = None
        if self.state == "awaiting":
            self._close(closecodes.AUTH_TIMEOUT, "authentication timeout")

    def _close(self, code: int, reason: str) -> None:
        self._stopTimer()
        self._early = None
        self.state = "closed"
        self.closed = (code, reason)

    def send(self, payload: bytes | str, isBinary: bool = False) -> None:
        """
        The client sends a message (C{str} is sent as UTF-8 text).

        @raise RuntimeError: if the connection is not open (a client cannot
            send before the upgrade or after a close).
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if self.state == "open":
            self.routed.append((data, isBinary))
            return
        if self.state != "awaiting":
            raise RuntimeError(f"cannot send on a connection that is {self.state}")
        if self._early is not None:
            if len(self._early) >= MAX_EARLY_MESSAGES:
                self._close(closecodes.POLICY_VIOLATION, "too many messages before authentication")
            else:
                self._early.append((data, isBinary))
            return
        self._early = []
        answer = maybeDeferred(self.authenticator.checkFirstMessage, self.request, data, isBinary)
        answer.addCallbacks(self._firstMessageDecided, self._failed)

    def _firstMessageDecided(self, decision: object) -> None:
        early, self._early = self._early, None
        if self.state != "awaiting":
            return
        if isinstance(decision, Accept):
            self._stopTimer()
            self._open(decision.identity)
            self.routed.extend(early or ())
        elif isinstance(decision, Deny):
            self._close(validCloseCode(decision.code, closecodes.AUTH_FAILED), decision.reason)
        else:
            self._wrong(f"checkFirstMessage answered {decision!r}, not Accept/Deny")


# -- sessions ----------------------------------------------------------------


@implementer(ISession)
class FakeSession:
    """
    A session that records what it was sent instead of writing to a socket.

    @ivar sent: C{(payload, isBinary)} of each frame, in order.
    @ivar closed: C{(code, reason)} once closed.
    """

    def __init__(self, uid: str, sessionId: str | None = None, *, open: bool = True) -> None:
        self.identity = Identity(uid=uid)
        self.uid = uid
        self.sessionId = sessionId or f"{uid}#{id(self):x}"
        self.open = open
        self.sent: list[tuple[bytes, bool]] = []
        self.closed: tuple[int, str] | None = None
        self._held: list[Frame] | None = None

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Record C{frame} if open (or hold it while holding).
        """
        if not self.open:
            return False
        if self._held is not None:
            self._held.append(frame)
            return True
        self.sent.append((frame.payload, frame.isBinary))
        return True

    def holdDeliveries(self) -> None:
        """
        Hold frames back.
        """
        if self._held is None:
            self._held = []

    def releaseDeliveries(self, first: Iterable[Frame] = ()) -> None:
        """
        Record C{first}, then what was held.
        """
        held, self._held = self._held or [], None
        for frame in list(first) + held:
            self.sendPrepared(frame)

    def isOpen(self) -> bool:
        """
        Whether it is open.
        """
        return self.open

    def close(self, code: int = closecodes.NORMAL, reason: str = "") -> None:
        """
        Record the close.
        """
        self.open = False
        self.closed = (code, reason)

    @property
    def texts(self) -> list[str]:
        """
        The text frames received, decoded.
        """
        return [p.decode("utf-8") for p, b in self.sent if not b]


def sessionRegistry(*sessions: Any) -> SessionRegistry:
    """
    The server's own registry (it does no I/O), holding C{sessions}: what
    C{IRoutingStrategy.route} is given.
    """
    registry = SessionRegistry()
    for session in sessions:
        registry.add(session)
    return registry
