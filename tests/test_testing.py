"""
Tests for L{realtime.testing}, the plugin authors' kit: its fakes provide
the real interfaces, and where it models the server (the handshake request,
the rules of authentication) it agrees with the real shell.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from realtime import closecodes
from realtime.config.discovery import discover
from realtime.delivery.fanout import Frame
from realtime.interfaces import (
    IAuthenticator,
    IAuthenticatorFactory,
    IFirstMessageAuthenticator,
    IRoutingStrategy,
    ISession,
    ISessionRegistry,
    IWarnings,
)
from realtime.routing.context import RoutingContext
from realtime.routing.echo import EchoStrategy
from realtime.testing import (
    HANDSHAKE_TIMEOUT,
    MAX_EARLY_MESSAGES,
    AuthenticationAttempt,
    FakeSession,
    makeHandshakeRequest,
    sessionRegistry,
    verifyPlugin,
)
from realtime.values import Accept, AwaitFirstMessage, Deny, Identity
from realtime.websocket import protocol
from tests.fakes import ScriptedAuthenticator
from tests.support import (
    AutobahnPath,
    ProtocolTestCase,
    buildRouter,
    clientFrame,
    closeCode,
    handshake,
    serverFrames,
    splitResponse,
)

#: options that build each built-in plugin
BUILTIN_OPTIONS = {
    "wechat": {"token": "t" * 32},
    "token": {"secret": "s" * 32},
}


class FakesTests(SynchronousTestCase):
    """
    The kit's fakes provide what they stand in for.
    """

    def test_fakeSession(self) -> None:
        """
        L{FakeSession} is an L{ISession} that records frames, holds them
        while holding, and refuses them once closed.
        """
        session = FakeSession("u")
        self.assertTrue(verifyObject(ISession, session))
        session.holdDeliveries()
        self.assertTrue(session.sendPrepared(Frame(b"b", False)))
        self.assertEqual(session.sent, [])
        session.releaseDeliveries([Frame(b"a", False)])
        self.assertEqual(session.texts, ["a", "b"])
        session.close(closecodes.KICKED, "bye")
        self.assertEqual((session.isOpen(), session.closed), (False, (closecodes.KICKED, "bye")))
        self.assertFalse(session.sendPrepared(Frame(b"c", False)))

    def test_sessionRegistry(self) -> None:
        """
        L{sessionRegistry} is the server's registry holding the sessions.
        """
        a, b, c = FakeSession("u"), FakeSession("u"), FakeSession("v")
        registry = sessionRegistry(a, b, c)
        self.assertTrue(verifyObject(ISessionRegistry, registry))
        self.assertEqual(set(registry.sessionsOf("u")), {a, b})
        self.assertEqual((len(registry), registry.uidCount()), (3, 2))


class VerifyPluginTests(SynchronousTestCase):
    """
    L{verifyPlugin} checks what discovery and startup check.
    """

    def test_builtins(self) -> None:
        """
        Every built-in plugin passes, and is built into a verified object;
        the one that asks for the server's services (C{channels}) is built in
        their context, and refused without one.
        """
        catalog = discover()
        for name, plugin in catalog.auth.byName.items():
            self.assertTrue(IAuthenticator.providedBy(verifyPlugin(plugin, BUILTIN_OPTIONS.get(name))), name)
        router = buildRouter(Clock(), offline=None)
        context = RoutingContext(router.registry, router.channels)
        for name, plugin in catalog.routing.byName.items():
            built = verifyPlugin(plugin, BUILTIN_OPTIONS.get(name), context=context)
            self.assertTrue(IRoutingStrategy.providedBy(built), name)
        self.assertRaises(TypeError, verifyPlugin, catalog.routing.find("channels"))

    def test_reactorPassed(self) -> None:
        """
        The reactor given is the one the plugin is built with.
        """
        seen: list[Any] = []
        clock = Clock()
        verifyPlugin(factoryOf(lambda options, reactor: seen.append(reactor) or Handshake()), reactor=clock)
        self.assertEqual(seen, [clock])

    def test_notAPlugin(self) -> None:
        """
        A factory without C{IPlugin} is not found by C{getPlugins}: refused.
        """
        self.assertRaises(Invalid, verifyPlugin, NotAPlugin())

    def test_noFactoryInterface(self) -> None:
        """
        An C{IPlugin} that is neither factory is refused.
        """
        self.assertRaises(TypeError, verifyPlugin, Neither())

    def test_builtBroken(self) -> None:
        """
        What the factory builds must provide its interface, and in full each
        optional interface it declares.
        """
        self.assertRaises(Invalid, verifyPlugin, factoryOf(lambda options, reactor: object()))
        self.assertRaises(Invalid, verifyPlugin, factoryOf(lambda options, reactor: ClaimsWarnings()))
        self.assertRaises(Invalid, verifyPlugin, factoryOf(lambda options, reactor: ClaimsFirstMessage()))

    def test_optionsRefused(self) -> None:
        """
        A plugin's refusal of its options reaches the test.
        """
        catalog = discover()
        e = self.assertRaises(ValueError, verifyPlugin, catalog.auth.find("token"), {})
        self.assertEqual(str(e), "token: option 'secret' is required")


#: the peer of the in-memory transport L{ProtocolTestCase} connects with
PEER_OF_TRANSPORT: dict[str, Any] = {"peer": "192.168.1.1", "port": 54321}


class HandshakeRequestTests(ProtocolTestCase):
    """
    L{makeHandshakeRequest} builds what the server hands C{checkHandshake},
    on both of the server's handshake paths.
    """

    def seenByServer(self, request: bytes, autobahn: bool) -> Any:
        """
        The request the authenticator saw when C{request} reached the server.
        """
        authenticator = ScriptedAuthenticator(Accept(Identity("u")))
        self.serve(authenticator, EchoStrategy())
        if autobahn:
            self.factory.protocol = AutobahnPath
        self.connect(request)
        [seen] = authenticator.requests
        return seen

    def test_sameAsServer(self) -> None:
        """
        Path, query, lower-case headers, offered protocols, origin and peer
        are those of the server's own value, equal field by field.
        """
        raw = handshake(
            "/ws?uid=7&x=1&x=2", {"X-Token": "t", "Origin": "http://localhost:8080"}, ["p1", "p2"]
        )
        built = makeHandshakeRequest(
            "/ws?uid=7",
            params={"x": ["1", "2"]},
            headers={"X-Token": "t"},
            protocols=["p1", "p2"],
            origin="http://localhost:8080",
            **PEER_OF_TRANSPORT,
        )
        for autobahn in (False, True):
            self.assertEqual(self.seenByServer(raw, autobahn), built, f"autobahn={autobahn}")

    def test_bare(self) -> None:
        """
        A handshake with nothing extra: no query, no protocols, no origin.
        """
        for autobahn in (False, True):
            seen = self.seenByServer(handshake(), autobahn)
            self.assertEqual(seen, makeHandshakeRequest(**PEER_OF_TRANSPORT), f"autobahn={autobahn}")

    def test_peer(self) -> None:
        """
        The peer is Autobahn's descriptor and the bare address.
        """
        request = makeHandshakeRequest(peer="10.0.0.1", port=4000)
        self.assertEqual((request.peer, request.peerHost), ("tcp4:10.0.0.1:4000", "10.0.0.1"))
        self.assertEqual(makeHandshakeRequest(peer="::1").peer, "tcp6:::1:50000")
        self.assertEqual(makeHandshakeRequest(peer="").peer, "unix")

    def test_params(self) -> None:
        """
        A single value or a list; C{param} reads the first.
        """
        request = makeHandshakeRequest(params={"a": "1", "b": ["2", "3"]})
        self.assertEqual(request.params, {"a": ["1"], "b": ["2", "3"]})
        self.assertEqual((request.param("b"), request.param("c")), ("2", None))


# -- the rules of authentication, in the kit and in the shell ----------------


@implementer(IAuthenticator)
class Handshake:
    """
    Accepts at the handshake as C{u}.
    """

    def checkHandshake(self, request: Any) -> Any:
        return Accept(Identity("u"))


@implementer(IAuthenticator)
class WaitsWithoutHook:
    """
    Answers C{AwaitFirstMessage} but has no C{checkFirstMessage}.
    """

    def checkHandshake(self, request: Any) -> Any:
        return AwaitFirstMessage(5)


@implementer(IAuthenticator, IWarnings)
class ClaimsWarnings:
    """
    Declares L{IWarnings} without C{warnings()}.
    """

    def checkHandshake(self, request: Any) -> Any:
        return Accept(Identity("u"))


@implementer(IFirstMessageAuthenticator)
class ClaimsFirstMessage(Handshake):
    """
    Declares the first-message hook it lacks.
    """


def factoryOf(build: Callable[[Any, Any], Any]) -> Any:
    """
    An auth plugin whose C{buildAuthenticator} is C{build}.
    """

    @implementer(IPlugin, IAuthenticatorFactory)
    class Factory:
        name = "made"
        description = "made by a test"
        options: dict[str, str] = {}

        def buildAuthenticator(self, options: Any, reactor: Any) -> Any:
            return build(options, reactor)

    return Factory()


@implementer(IAuthenticatorFactory)
class NotAPlugin:
    """
    An auth factory missing C{IPlugin}.
    """

    name = "x"
    description = "x"
    options: dict[str, str] = {}

    def buildAuthenticator(self, options: Any, reactor: Any) -> Any:
        return Handshake()


@implementer(IPlugin)
class Neither:
    """
    A plugin of some other kind.
    """


#: C{(name, authenticator factory, what the client does)}: each step is
#: C{("send", payload)} or C{("advance", seconds)}
SCENARIOS: list[tuple[str, Callable[[], Any], list[tuple[str, Any]]]] = [
    ("accepted", lambda: ScriptedAuthenticator(Accept(Identity("alice"))), [("send", b"hi")]),
    ("denied", lambda: ScriptedAuthenticator(Deny(403, "no")), []),
    ("first accepted", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), Accept(Identity("bob"))), [("send", b"bob"), ("send", b"hi")]),
    ("first denied", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), Deny(closecodes.AUTH_FAILED, "bad")), [("send", b"x")]),
    ("first denied, odd code", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), Deny(403, "bad")), [("send", b"x")]),
    ("first timeout", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), None), [("advance", 4.9), ("advance", 0.2)]),
    ("slow handshake", lambda: ScriptedAuthenticator(Deferred()), [("advance", HANDSHAKE_TIMEOUT + 1)]),
    ("first pending, then timeout", lambda: ScriptedAuthenticator(AwaitFirstMessage(2), Deferred()), [("send", b"x"), ("advance", 3)]),
    ("too many early", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), Deferred()), [("send", b"x")] * (MAX_EARLY_MESSAGES + 2)),
    ("await without the hook", WaitsWithoutHook, []),
    ("subprotocol not offered", lambda: ScriptedAuthenticator(Accept(Identity("u", subprotocol="zz"))), []),
    ("first fails", lambda: ScriptedAuthenticator(AwaitFirstMessage(5), fail(RuntimeError("db down"))), [("send", b"x")]),
]


class AuthenticationAttemptTests(ProtocolTestCase):
    """
    L{AuthenticationAttempt} reaches the outcome the real shell reaches, for
    every rule it models.
    """

    def test_constants(self) -> None:
        """
        The kit's timeouts and limits are the server's.
        """
        self.assertEqual(HANDSHAKE_TIMEOUT, protocol.HANDSHAKE_TIMEOUT)
        self.assertEqual(MAX_EARLY_MESSAGES, protocol.MAX_EARLY_MESSAGES)

    def inKit(self, authenticator: Any, steps: list[tuple[str, Any]]) -> tuple[Any, ...]:
        clock = Clock()
        attempt = AuthenticationAttempt(authenticator, makeHandshakeRequest(), clock)
        for step, value in steps:
            if step == "send":
                if attempt.state in ("open", "awaiting"):
                    attempt.send(value)
            else:
                clock.advance(value)
        if attempt.state == "refused":
            return ("http", attempt.refused.code)
        if attempt.state == "closed":
            return ("closed", attempt.closed)
        if attempt.state == "failed":
            return ("failed",)
        return (attempt.state, attempt.identity.uid if attempt.identity else None, attempt.routed)

    def inShell(self, authenticator: Any, steps: list[tuple[str, Any]]) -> tuple[Any, ...]:
        self.serve(authenticator, EchoStrategy())
        proto, transport = self.connect()
        head = transport.value()
        if not head.startswith(b"HTTP/1.1 101") and head:
            return self.refusal(head)
        transport.clear()
        for step, value in steps:
            if step == "send":
                proto.dataReceived(clientFrame(value))
            else:
                self.clock.advance(value)
            self.clock.advance(0)
        data = transport.value()
        if head == b"":
            if not data.startswith(b"HTTP/1.1 101"):
                return self.refusal(data)
            data = splitResponse(data)[1]
        frames = serverFrames(data)
        closes = [closeCode(p) for op, p in frames if op == 8]
        if closes:
            if closes[0][0] == closecodes.INTERNAL_ERROR:
                self.flushLoggedErrors()
                return ("failed",)
            return ("closed", closes[0])
        echoed = [(p, False) for op, p in frames if op == 1]
        state = "open" if proto.identity is not None and not proto._awaitingFirst else "awaiting"
        return (state, proto.uid or None, echoed)

    def refusal(self, head: bytes) -> tuple[Any, ...]:
        status = int(head.split(b" ", 2)[1])
        if status == 500:
            self.flushLoggedErrors()
            return ("failed",)
        return ("http", status)

    def test_sameOutcomes(self) -> None:
        """
        For each scenario, the kit and the shell agree.
        """
        for name, authenticator, steps in SCENARIOS:
            kit = self.inKit(authenticator(), steps)
            shell = self.inShell(authenticator(), steps)
            self.assertEqual(kit, shell, name)

    def test_outcomes(self) -> None:
        """
        What the scenarios come to, spelled out.
        """
        outcomes = {name: self.inKit(authenticator(), steps) for name, authenticator, steps in SCENARIOS}
        self.assertEqual(outcomes["accepted"], ("open", "alice", [(b"hi", False)]))
        self.assertEqual(outcomes["denied"], ("http", 403))
        self.assertEqual(outcomes["first accepted"], ("open", "bob", [(b"hi", False)]))
        self.assertEqual(outcomes["first denied"], ("closed", (closecodes.AUTH_FAILED, "bad")))
        self.assertEqual(outcomes["first denied, odd code"], ("closed", (closecodes.AUTH_FAILED, "bad")))
        self.assertEqual(outcomes["first timeout"], ("closed", (closecodes.AUTH_TIMEOUT, "authentication timeout")))
        self.assertEqual(outcomes["slow handshake"], ("http", 503))
        self.assertEqual(
            outcomes["first pending, then timeout"], ("closed", (closecodes.AUTH_TIMEOUT, "authentication timeout"))
        )
        self.assertEqual(
            outcomes["too many early"], ("closed", (closecodes.POLICY_VIOLATION, "too many messages before authentication"))
        )
        for name in ("await without the hook", "subprotocol not offered", "first fails"):
            self.assertEqual(outcomes[name], ("failed",), name)

    def test_sendWhenClosed(self) -> None:
        """
        A client cannot send on a refused connection.
        """
        attempt = AuthenticationAttempt(ScriptedAuthenticator(Deny(401, "no")))
        self.assertRaises(RuntimeError, attempt.send, "x")

    def test_lateHandshakeIgnored(self) -> None:
        """
        A handshake answer after the timeout changes nothing.
        """
        d: Deferred[object] = Deferred()
        attempt = AuthenticationAttempt(ScriptedAuthenticator(d))
        attempt.clock.advance(HANDSHAKE_TIMEOUT)
        d.callback(Accept(Identity("late")))
        self.assertEqual((attempt.state, attempt.refused, attempt.identity), ("refused", Deny(503, "authentication took too long"), None))
