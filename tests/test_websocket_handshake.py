"""
Tests for L{realtime.websocket.handshake} and L{realtime.websocket._autobahn.opening} (the
fast opening handshake) and L{realtime.websocket._autobahn.connection} (the lean adapter):
both must leave a connection exactly as Autobahn's own path does, and the fast path must
only ever accept what Autobahn would.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime.core.origins import OriginPolicy
from realtime.routing.echo import EchoStrategy
from realtime.tap import acceptDeflate
from realtime.values import Accept, Identity
from realtime.websocket.handshake import readUpgrade
from tests.fakes import ScriptedAuthenticator
from tests.support import KEY, PEER, AutobahnPath, TolerantTransport, buildFactory, handshake

txaio.use_twisted()


def read(request: bytes, externalPort: int | None = None) -> Any:
    return readUpgrade(request, request.find(b"\r\n\r\n"), externalPort)


def raw(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


COMMON = (
    "Host: example.com:8080",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


class ReadUpgradeTests(SynchronousTestCase):
    """
    L{readUpgrade} reads the common request and declines everything else.
    """

    def test_common(self) -> None:
        """
        Path, query, host without its port, protocols in order, the key.
        """
        found = read(handshake("/ws?uid=1&a=x&a=y", protocols=["p1", "p2"]))
        self.assertEqual(found.path, "/ws")
        self.assertEqual(found.params, {"uid": ["1"], "a": ["x", "y"]})
        self.assertEqual(found.host, "localhost")
        self.assertEqual(found.protocols, ["p1", "p2"])
        self.assertEqual(found.key, KEY)
        self.assertIsNone(found.origin)
        self.assertEqual(found.headers["upgrade"], "websocket")

    def test_tokens(self) -> None:
        """
        C{Upgrade} and C{Connection} are token lists, case-insensitive.
        """
        found = read(
            raw(
                "GET / HTTP/1.1",
                "host: a",
                "UPGRADE: WebSocket",
                "connection: keep-alive, Upgrade",
                f"sec-websocket-key: {KEY}",
                "Sec-WebSocket-Version: 13",
            )
        )
        self.assertEqual(found.host, "a")

    def test_declined(self) -> None:
        """
        Anything unusual is left to Autobahn.
        """
        cases = {
            "method": raw("POST / HTTP/1.1", *COMMON),
            "version": raw("GET / HTTP/1.0", *COMMON),
            "absolute": raw("GET http://a/ HTTP/1.1", *COMMON),
            "netloc": raw("GET //a/b HTTP/1.1", *COMMON),
            "fragment": raw("GET /a#b HTTP/1.1", *COMMON),
            "params": raw("GET /a;b HTTP/1.1", *COMMON),
            "twice": raw("GET / HTTP/1.1", *COMMON, "Host: other"),
            "no colon": raw("GET / HTTP/1.1", *COMMON, "junk"),
            "no host": raw("GET / HTTP/1.1", *COMMON[1:]),
            "no upgrade": raw("GET / HTTP/1.1", COMMON[0], *COMMON[2:]),
            "not websocket": raw("GET / HTTP/1.1", COMMON[0], "Upgrade: h2c", *COMMON[2:]),
            "no connection upgrade": raw("GET / HTTP/1.1", *COMMON[:2], "Connection: close", *COMMON[3:]),
            "ws version": raw("GET / HTTP/1.1", *COMMON[:4], "Sec-WebSocket-Version: 8"),
            "short key": raw("GET / HTTP/1.1", *COMMON[:3], "Sec-WebSocket-Key: abc==", COMMON[4]),
            "bad key": raw("GET / HTTP/1.1", *COMMON[:3], "Sec-WebSocket-Key: " + "!" * 22 + "==", COMMON[4]),
            "bad port": raw("GET / HTTP/1.1", "Host: a:b", *COMMON[1:]),
            "same protocol twice": raw("GET / HTTP/1.1", *COMMON, "Sec-WebSocket-Protocol: a, a"),
        }
        for name, request in cases.items():
            self.assertIsNone(read(request), name)

    def test_externalPort(self) -> None:
        """
        With an external port set, the Host header's port must match it.
        """
        self.assertIsNotNone(read(raw("GET / HTTP/1.1", *COMMON), externalPort=8080))
        self.assertIsNone(read(raw("GET / HTTP/1.1", *COMMON), externalPort=9000))


class SameAsAutobahnTests(SynchronousTestCase):
    """
    A request answered by the fast path gets the answer Autobahn's path
    gives, and the authenticator sees the same request.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)

    #: C{--allowed-origin} of the factories (C{None}: the default, any)
    origins: list[str] | None = ["https://*.example.com:*", "http://localhost:*", "https://good.example"]

    def answer(self, protocol: type | None, request: bytes, subprotocol: str | None = None) -> tuple[bytes, Any, Any]:
        """
        The response, the request the authenticator saw, and the protocol.
        """
        authenticator = ScriptedAuthenticator(Accept(Identity("u", subprotocol=subprotocol)))
        factory = buildFactory(authenticator, EchoStrategy(), self.clock, origins=OriginPolicy(self.origins or ()))
        factory.setProtocolOptions(
            perMessageCompressionAccept=acceptDeflate,
            openHandshakeTimeout=0,
            autoPingInterval=0,
        )
        if protocol is not None:
            factory.protocol = protocol
        proto = factory.buildProtocol(PEER)
        transport = TolerantTransport()
        proto.makeConnection(transport)
        proto.dataReceived(request)
        self.clock.advance(0)
        return transport.value(), authenticator.requests, proto

    def assertSame(self, request: bytes, subprotocol: str | None = None, fast: bool = True) -> bytes:
        ours, seenByOurs, proto = self.answer(None, request, subprotocol)
        theirs, seenByTheirs, _ = self.answer(AutobahnPath, request, subprotocol)
        self.assertEqual(ours, theirs)
        self.assertEqual(seenByOurs, seenByTheirs)
        # the fast path really was taken (or really was not)
        self.assertEqual(readUpgrade(request, request.find(b"\r\n\r\n")) is not None, fast)
        return ours

    def test_common(self) -> None:
        """
        The plain request.
        """
        self.assertTrue(self.assertSame(handshake("/?a=1")).startswith(b"HTTP/1.1 101"))

    def test_subprotocol(self) -> None:
        """
        A chosen subprotocol is echoed the same way.
        """
        response = self.assertSame(handshake("/", protocols=["wx.a", "chat"]), subprotocol="chat")
        self.assertIn(b"Sec-WebSocket-Protocol: chat\r\n", response)

    def test_deflate(self) -> None:
        """
        A permessage-deflate offer is negotiated by Autobahn either way.
        """
        offer = "permessage-deflate; client_max_window_bits"
        response = self.assertSame(handshake("/", headers={"Sec-WebSocket-Extensions": offer}))
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", response)

    def test_origins(self) -> None:
        """
        Origins are matched as written (the default port may be left out,
        on either side), the same on both paths: the others are refused
        with 403, C{null} too as the list does not name it, and a
        malformed origin with Autobahn's 400.
        """
        cases = {
            "https://app.example.com": 101,
            "https://app.example.com:8443": 101,
            "http://localhost:3000": 101,
            "https://good.example": 101,
            "https://good.example:443": 101,
            "https://GOOD.example": 101,
            "https://good.example:8443": 403,
            "http://good.example": 403,
            "null": 403,
            "http://evil.test": 403,
            "https://app.example.com.evil.test": 403,
            "nonsense": 400,
        }
        for origin, status in cases.items():
            response = self.assertSame(handshake("/", headers={"Origin": origin}))
            self.assertTrue(response.startswith(b"HTTP/1.1 %d " % status), (origin, response[:60]))

    def test_defaultOrigins(self) -> None:
        """
        By default every origin may connect, a page opened from a file
        (C{null}) too.
        """
        self.origins = None
        for origin in ("https://any.example", "null", "file://"):
            response = self.assertSame(handshake("/", headers={"Origin": origin}))
            self.assertTrue(response.startswith(b"HTTP/1.1 101 "), (origin, response[:60]))

    def test_declinedRequests(self) -> None:
        """
        What the fast path declines, Autobahn answers as it always did (a
        header twice refused, version 8 of the drafts accepted...).
        """
        for request in (
            raw("GET / HTTP/1.1", *COMMON, "Host: other"),
            raw("GET / HTTP/1.1", *COMMON[:4], "Sec-WebSocket-Version: 8"),
            raw("GET /#x HTTP/1.1", *COMMON),
        ):
            self.assertSame(request, fast=False)

    def test_malformedHeadsRefused(self) -> None:
        """
        A head Autobahn refuses as malformed HTTP (the fuzzer found the fast
        path accepting these) is declined by the fast path and refused with
        Autobahn's 400: whitespace before a colon, a bare LF, obs-fold, a
        control character, a name that is not a token.  A front proxy could
        read such a head differently (header smuggling).
        """
        for request in (
            raw("GET / HTTP/1.1", *COMMON[:4], "Sec-WebSocket-Version : 13"),
            raw("GET / HTTP/1.1", *COMMON).replace(b"\r\nUpgrade", b"\nUpgrade"),
            raw("GET / HTTP/1.1", *COMMON[:2], "Connection:", " Upgrade", *COMMON[3:]),
            raw("GET / HTTP/1.1", *COMMON[:2], "Connection: Upgrade\x0b", *COMMON[3:]),
            raw("GET / HTTP/1.1", *COMMON, "X(y): z"),
            raw("GET /\x00 HTTP/1.1", *COMMON),
            raw("GET /\t HTTP/1.1", *COMMON),
        ):
            response = self.assertSame(request, fast=False)
            self.assertTrue(response.startswith(b"HTTP/1.1 400"), (request, response))

    def test_connectionState(self) -> None:
        """
        After the handshake the protocol holds the same attributes, with the
        same values, as after Autobahn's (so Autobahn's later code finds
        everything it set itself).
        """
        request = handshake("/x?y=1", headers={"Origin": "https://a.example.com"}, protocols=["p"])
        _, _, ours = self.answer(None, request, subprotocol="p")
        _, _, theirs = self.answer(AutobahnPath, request, subprotocol="p")
        skip = {"factory", "transport", "_transport_details", "is_open", "is_closed", "sessionId", "_lastHeard"}
        self.assertEqual(set(ours.__dict__) - skip, set(theirs.__dict__) - skip)
        for name in set(ours.__dict__) - skip - {"utf8validator", "trafficStats", "_authTimeout", "identity"}:
            self.assertEqual(ours.__dict__[name], theirs.__dict__[name], name)


class LeanAdapterTests(SynchronousTestCase):
    """
    L{realtime.websocket._autobahn.connection.ServerConnection} sets up what
    Autobahn's adapter does.
    """

    def test_sameAttributes(self) -> None:
        """
        After C{connectionMade}, the same attributes exist as after
        Autobahn's own C{connectionMade} (a new Autobahn that sets more
        fails here, not in production).
        """
        clock = Clock()
        factory = buildFactory(ScriptedAuthenticator(Accept(Identity("u"))), EchoStrategy(), clock)
        ours = factory.buildProtocol(PEER)
        ours.makeConnection(TolerantTransport())
        theirs = WebSocketServerProtocol()
        theirs.factory = factory
        theirs.makeConnection(TolerantTransport())
        self.assertEqual(factory.countConnections, 2)
        self.assertEqual(set(theirs.__dict__) - set(dir(ours)), set())
        objects = {
            "utf8validator",
            "trafficStats",
            "_transport_details",
            "is_open",
            "is_closed",
            "send_queue",
            "openHandshakeTimeoutCall",
            "transport",
        }
        for name in set(theirs.__dict__) - objects:
            self.assertEqual(getattr(ours, name), getattr(theirs, name), name)
        for name in objects - {"send_queue"}:
            self.assertIs(type(getattr(ours, name)), type(getattr(theirs, name)), name)
        # one empty trickle queue is shared until a connection needs its own
        self.assertEqual(list(ours.send_queue), list(theirs.send_queue))
