"""
Tests for L{realtime.core.limits} and where its limits are enforced: the token
bucket and the counters under a fake clock, the opening handshake on both
paths (the fast one and Autobahn's) fed raw bytes, the message rate, and the
HTTP API's push rate.
"""

from __future__ import annotations

import json
import resource
from typing import Any

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime import closecodes
from realtime.api.http import buildApiSite
from realtime.auth.firstpacket import FirstPacketAuthenticator
from realtime.broker.memory import MemoryBroker
from realtime.config.options import Options
from realtime.core.limits import (
    RETRY_AFTER,
    SEEN_ADDRESSES,
    ConnectionLimits,
    LimitExceeded,
    ProxyTrust,
    RateLimit,
    TokenBucket,
    defaultMaxConnections,
    parseRate,
    retryAfter,
)
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.routing.echo import EchoStrategy
from realtime.values import Accept, Deny, Identity
from tests.fakes import FakeSession, ScriptedAuthenticator
from tests.support import (
    AutobahnPath,
    TolerantTransport,
    buildFactory,
    clientFrame,
    closeCode,
    handshake,
    serverFrames,
    splitResponse,
)
from tests.test_api_http import KEY, PEER, Response, rawRequest

txaio.use_twisted()


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket} starts full, refills at its rate and never holds more
    than its burst.
    """

    def test_burstThenWait(self) -> None:
        """
        C{burst} takes succeed at once; the next says how long until a token.
        """
        clock = Clock()
        bucket = TokenBucket(RateLimit(2.0, 3.0), clock)
        self.assertEqual([bucket.take() for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(bucket.take(), 0.5)
        clock.advance(0.25)
        self.assertAlmostEqual(bucket.take(), 0.25)
        clock.advance(0.25)
        self.assertEqual(bucket.take(), 0.0)

    def test_refillCapped(self) -> None:
        """
        A long quiet time saves up C{burst} tokens, no more.
        """
        clock = Clock()
        bucket = TokenBucket(RateLimit(1.0, 2.0), clock)
        bucket.take()
        bucket.take()
        clock.advance(1000)
        self.assertEqual([bucket.take() for _ in range(2)], [0.0, 0.0])
        self.assertGreater(bucket.take(), 0)

    def test_clockBackwards(self) -> None:
        """
        A clock set back neither refills nor breaks the bucket.
        """
        clock = Clock()
        clock.advance(100)
        bucket = TokenBucket(RateLimit(1.0, 1.0), clock)
        bucket.take()
        clock.rightNow = 50.0
        self.assertAlmostEqual(bucket.take(), 1.0)
        clock.rightNow = 51.0
        self.assertEqual(bucket.take(), 0.0)


class ParseRateTests(SynchronousTestCase):
    """
    C{--client-rate} and C{--api-rate} values.
    """

    def test_values(self) -> None:
        """
        RATE (burst twice the rate, at least 1), RATE:BURST, and 0 for none.
        """
        self.assertEqual(parseRate("x", "10"), RateLimit(10.0, 20.0))
        self.assertEqual(parseRate("x", "0.2"), RateLimit(0.2, 1.0))
        self.assertEqual(parseRate("x", "5:7"), RateLimit(5.0, 7.0))
        self.assertIsNone(parseRate("x", "0"))

    def test_refused(self) -> None:
        """
        Anything else names the option.
        """
        for text in ("fast", "-1", "1:0", "inf", "1:nan", "1:2:3"):
            e = self.assertRaises(ValueError, parseRate, "client-rate", text)
            self.assertIn("--client-rate", str(e))

    def test_retryAfter(self) -> None:
        """
        Whole seconds, rounded up, at least 1.
        """
        self.assertEqual([retryAfter(w) for w in (0.01, 1.0, 1.2)], [b"1", b"1", b"2"])


class ProxyTrustTests(SynchronousTestCase):
    """
    L{ProxyTrust.clientOf}: whose address a connection is counted under.
    """

    trust = ProxyTrust(["10.0.0.0/8", "2001:db8:ffff::1"])

    def test_untrustedPeer(self) -> None:
        """
        A peer that is no trusted proxy is the client, whatever it claims.
        """
        self.assertEqual(self.trust.clientOf("198.51.100.7", "203.0.113.1"), "198.51.100.7")

    def test_rightMostUntrusted(self) -> None:
        """
        Through trusted proxies, the right-most address that is not one of
        them: what the client wrote left of it is not believed.
        """
        self.assertEqual(self.trust.clientOf("10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2"), "203.0.113.9")

    def test_nobodyNamed(self) -> None:
        """
        A trusted peer naming no client (or only proxies) is not counted.
        """
        self.assertIsNone(self.trust.clientOf("10.0.0.1", None))
        self.assertIsNone(self.trust.clientOf("10.0.0.1", "10.1.1.1"))
        self.assertIsNone(self.trust.clientOf("", None))

    def test_garbage(self) -> None:
        """
        Garbage a trusted proxy passes on is a client of its own.
        """
        self.assertEqual(self.trust.clientOf("10.0.0.1", "unknown"), "unknown")

    def test_ipv6(self) -> None:
        """
        IPv6 clients are counted by /64; IPv4-mapped addresses as IPv4.
        """
        self.assertEqual(self.trust.clientOf("2001:db8:1:2:3::9", None), "2001:db8:1:2::/64")
        self.assertEqual(self.trust.clientOf("2001:db8:1:2:ffff::1", None), "2001:db8:1:2::/64")
        self.assertEqual(self.trust.clientOf("::ffff:198.51.100.7", None), "198.51.100.7")
        self.assertEqual(self.trust.clientOf("2001:db8:ffff::1", "[2001:db8:5::1]"), "2001:db8:5::/64")

    def test_remembersBounded(self) -> None:
        """
        Parsed peers are remembered, at most C{SEEN_ADDRESSES} of them.
        """
        trust = ProxyTrust([])
        for n in range(SEEN_ADDRESSES + 10):
            host = f"10.0.{n >> 8}.{n & 255}"
            self.assertEqual([trust.clientOf(host, None) for _ in range(2)], [host, host])
        self.assertLessEqual(len(trust._seen), SEEN_ADDRESSES)

    def test_defaultLoopback(self) -> None:
        """
        By default a proxy on this host is trusted; C{none} trusts nobody.
        """
        self.assertEqual(ConnectionLimits(maxPerAddress=1).trust.clientOf("127.0.0.1", "203.0.113.1"), "203.0.113.1")
        self.assertEqual(ProxyTrust(["none"]).clientOf("127.0.0.1", "203.0.113.1"), "127.0.0.1")
        self.assertRaises(ValueError, ProxyTrust, ["not-an-address"])


class ConnectionLimitsTests(SynchronousTestCase):
    """
    L{ConnectionLimits} counts admitted connections and refuses the new one.
    """

    def test_total(self) -> None:
        """
        Past the total: 503; a release makes room.
        """
        limits = ConnectionLimits(maxTotal=2)
        keys = [limits.admit("198.51.100.1", None), limits.admit("198.51.100.2", None)]
        e = self.assertRaises(LimitExceeded, limits.admit, "198.51.100.3", None)
        self.assertEqual((e.status, e.kind), (503, "total"))
        limits.release(keys[0])
        limits.admit("198.51.100.3", None)
        self.assertEqual((limits.total, limits.refused["total"]), (2, 1))

    def test_perAddress(self) -> None:
        """
        Past an address's: 429 for it, others still admitted; counts return
        to nothing.
        """
        limits = ConnectionLimits(maxPerAddress=2, trust=ProxyTrust([]))
        keys = [limits.admit("198.51.100.1", None) for _ in range(2)]
        e = self.assertRaises(LimitExceeded, limits.admit, "198.51.100.1", None)
        self.assertEqual((e.status, e.kind), (429, "address"))
        other = limits.admit("198.51.100.2", None)
        self.assertEqual(limits.connectionsFrom("198.51.100.1"), 2)
        for key in [*keys, other]:
            limits.release(key)
        self.assertEqual((limits.total, limits.connectionsFrom("198.51.100.1")), (0, 0))
        self.assertEqual(limits._perAddress, {})

    def test_perUid(self) -> None:
        """
        A uid holding the most allowed sessions gets no more.
        """
        registry = SessionRegistry()
        limits = ConnectionLimits(maxPerUid=2)
        for n in range(2):
            limits.checkUid(registry, "u")
            registry.add(FakeSession("u", f"s{n}"))
        e = self.assertRaises(LimitExceeded, limits.checkUid, registry, "u")
        self.assertEqual((e.status, e.kind), (429, "uid"))
        limits.checkUid(registry, "v")
        ConnectionLimits().checkUid(registry, "u")

    def test_defaultMaxConnections(self) -> None:
        """
        The open-file limit minus a tenth of it, at least 100 and at most
        1000 descriptors.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        for limit, expected in ((512, 412), (1024, 922), (4096, 3687), (20000, 19000), (50000, 49000)):
            if limit <= hard or hard == resource.RLIM_INFINITY:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
                self.assertEqual(defaultMaxConnections(), expected)


def peer(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 40000)


class HandshakeLimitTests(SynchronousTestCase):
    """
    Both handshake paths refuse an upgrade over a connection limit with an
    HTTP error and C{Retry-After}, before the authenticator is asked.
    """

    paths: dict[str, type | None] = {"fast": None, "autobahn": AutobahnPath}

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)

    def serve(self, protocol: type | None, limits: ConnectionLimits, answer: Any = None) -> None:
        self.authenticator = ScriptedAuthenticator(answer or Accept(Identity("u")))
        self.factory = buildFactory(self.authenticator, EchoStrategy(), self.clock, limits=limits)
        self.factory.setProtocolOptions(openHandshakeTimeout=0, autoPingInterval=0)
        if protocol is not None:
            self.factory.protocol = protocol

    def connect(self, host: str = "198.51.100.1", headers: dict[str, str] | None = None) -> tuple[Any, bytes]:
        proto = self.factory.buildProtocol(peer(host))
        transport = TolerantTransport(peerAddress=peer(host))
        proto.makeConnection(transport)
        proto.dataReceived(handshake("/", headers))
        self.clock.advance(0)
        if transport.disconnecting:
            # what a real transport does after a refusal
            proto.connectionLost(Failure(ConnectionDone()))
        return proto, splitResponse(transport.value())[0]

    def eachPath(self, limits: Any, test: Any, answer: Any = None) -> None:
        for name, protocol in self.paths.items():
            self.serve(protocol, limits(), answer)
            with self.subTest(path=name):
                test()

    def assertRefused(self, head: bytes, status: int) -> None:
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), head)
        self.assertIn(b"\r\nRetry-After: %d" % RETRY_AFTER, head)

    def test_total(self) -> None:
        """
        Over C{--max-connections}: 503, the authenticator never asked; a
        closed connection frees its slot.
        """

        def test() -> None:
            first, head = self.connect("198.51.100.1")
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            self.connect("198.51.100.2")
            self.assertRefused(self.connect("198.51.100.3")[1], 503)
            self.assertEqual(len(self.authenticator.requests), 2)
            first.connectionLost(Failure(ConnectionDone()))
            self.assertTrue(self.connect("198.51.100.3")[1].startswith(b"HTTP/1.1 101"))
            self.assertEqual(self.factory.limits.total, 2)

        self.eachPath(lambda: ConnectionLimits(maxTotal=2), test)

    def test_perAddress(self) -> None:
        """
        Over C{--max-connections-per-ip}: 429 for that address only.
        """

        def test() -> None:
            for _ in range(2):
                self.assertTrue(self.connect("198.51.100.1")[1].startswith(b"HTTP/1.1 101"))
            self.assertRefused(self.connect("198.51.100.1")[1], 429)
            self.assertTrue(self.connect("198.51.100.2")[1].startswith(b"HTTP/1.1 101"))

        self.eachPath(lambda: ConnectionLimits(maxPerAddress=2, trust=ProxyTrust([])), test)

    def test_forwardedFor(self) -> None:
        """
        Through a trusted proxy, C{X-Forwarded-For} names the client; from
        anyone else it is ignored.
        """

        def test() -> None:
            via = {"X-Forwarded-For": "203.0.113.5"}
            for _ in range(2):
                self.assertTrue(self.connect("10.0.0.1", via)[1].startswith(b"HTTP/1.1 101"))
            self.assertRefused(self.connect("10.0.0.2", via)[1], 429)
            self.assertTrue(self.connect("10.0.0.1", {"X-Forwarded-For": "203.0.113.6"})[1].startswith(b"HTTP/1.1 101"))
            self.assertTrue(self.connect("198.51.100.9", via)[1].startswith(b"HTTP/1.1 101"))
            self.assertEqual(self.factory.limits.connectionsFrom("198.51.100.9"), 1)
            self.assertEqual(self.factory.limits.connectionsFrom("203.0.113.5"), 2)

        self.eachPath(lambda: ConnectionLimits(maxPerAddress=2, trust=ProxyTrust(["10.0.0.0/8"])), test)

    def test_deniedReleases(self) -> None:
        """
        A handshake the authenticator refuses gives its slot back.
        """

        def test() -> None:
            head = self.connect()[1]
            self.assertTrue(head.startswith(b"HTTP/1.1 401"), head)
            self.assertNotIn(b"Retry-After", head)
            self.assertEqual(self.factory.limits.total, 0)

        self.eachPath(lambda: ConnectionLimits(maxTotal=1), test, Deny(401, "no"))

    def test_perUidAtHandshake(self) -> None:
        """
        An authenticator that names the uid at the handshake: over
        C{--max-connections-per-uid} the upgrade is refused with 429.
        """

        def test() -> None:
            for n in range(2):
                self.assertTrue(self.connect(f"198.51.100.{n}")[1].startswith(b"HTTP/1.1 101"))
            self.assertRefused(self.connect("198.51.100.7")[1], 429)
            self.assertEqual(len(self.factory.registry.sessionsOf("u")), 2)
            self.assertEqual((self.factory.limits.total, self.factory.limits.refused["uid"]), (2, 1))

        self.eachPath(lambda: ConnectionLimits(maxPerUid=2), test)


class OpenConnectionLimitTests(HandshakeLimitTests):
    """
    What is enforced once the connection is open: the uid of a first
    packet, and the message rate.
    """

    def open(self, host: str = "198.51.100.1") -> tuple[Any, TolerantTransport]:
        proto = self.factory.buildProtocol(peer(host))
        transport = TolerantTransport(peerAddress=peer(host))
        proto.makeConnection(transport)
        proto.dataReceived(handshake())
        self.clock.advance(0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        transport.clear()
        return proto, transport

    def frames(self, transport: TolerantTransport) -> list[tuple[int, bytes]]:
        self.clock.advance(0)
        data = transport.value()
        transport.clear()
        return serverFrames(data)

    def test_perUidFirstPacket(self) -> None:
        """
        The uid of a first packet over C{--max-connections-per-uid}: close
        4008; the sessions the uid held keep going.
        """
        self.factory = buildFactory(
            FirstPacketAuthenticator(self.clock, 10.0, None), EchoStrategy(), self.clock, limits=ConnectionLimits(maxPerUid=2)
        )
        self.factory.setProtocolOptions(openHandshakeTimeout=0, autoPingInterval=0)
        for _ in range(2):
            proto, transport = self.open()
            proto.dataReceived(clientFrame(b"alice"))
            self.assertEqual(self.frames(transport), [])
        proto, transport = self.open()
        proto.dataReceived(clientFrame(b"alice") + clientFrame(b"echo me?"))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual((opcode, closeCode(payload)[0]), (8, closecodes.TOO_MANY_CONNECTIONS))
        self.assertEqual(len(self.factory.registry.sessionsOf("alice")), 2)
        self.assertIn(closecodes.TOO_MANY_CONNECTIONS, closecodes.DESCRIPTIONS)

    def test_clientRate(self) -> None:
        """
        Past C{--client-rate}'s burst, close 4029 and nothing more is
        routed; within it, tokens come back with time.
        """
        self.serve(None, ConnectionLimits())
        self.factory.clientRate = RateLimit(1.0, 2.0)
        proto, transport = self.open()
        proto.dataReceived(clientFrame(b"a") + clientFrame(b"b"))
        self.assertEqual(self.frames(transport), [(1, b"a"), (1, b"b")])
        self.clock.advance(1)
        proto.dataReceived(clientFrame(b"c"))
        self.assertEqual(self.frames(transport), [(1, b"c")])
        proto.dataReceived(clientFrame(b"d") + clientFrame(b"e"))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual((opcode, closeCode(payload)[0]), (8, closecodes.RATE_LIMITED))
        self.assertEqual(self.factory.limits.refused["rate"], 1)
        self.assertIn(closecodes.RATE_LIMITED, closecodes.DESCRIPTIONS)

    def test_noRateByDefault(self) -> None:
        """
        A factory without C{clientRate} routes every message.
        """
        self.serve(None, ConnectionLimits())
        proto, transport = self.open()
        proto.dataReceived(b"".join(clientFrame(b"%d" % n) for n in range(500)))
        self.assertEqual(len(self.frames(transport)), 500)


class ApiRateTests(SynchronousTestCase):
    """
    C{--api-rate}: the key's pushes past the rate get 429 with
    C{Retry-After}; reads are not counted.
    """

    def test_pushes(self) -> None:
        clock = Clock()
        registry = SessionRegistry()
        site = buildApiSite(MemoryBroker(registry, Fanout(clock)), KEY, 1024, clock, rate=RateLimit(0.5, 2.0))

        def request(*args: Any) -> Response:
            channel = site.buildProtocol(PEER)
            transport = StringTransport()
            channel.makeConnection(transport)
            channel.dataReceived(rawRequest(*args))
            channel.connectionLost(Failure(ConnectionDone()))
            return Response(transport.value())

        push = json.dumps({"uid": "u", "data": "x"}).encode()
        self.assertEqual([request("POST", "/api/push", push).status for _ in range(2)], [200, 200])
        refused = request("POST", "/api/broadcast", b'{"data": 1}')
        self.assertEqual((refused.status, refused.json["error"]["code"]), (429, "rate_limited"))
        self.assertEqual(refused.headers["retry-after"], "2")
        self.assertEqual(request("GET", "/api/stats").status, 200)
        clock.advance(2)
        self.assertEqual(request("POST", "/api/push", push).status, 200)


class LimitOptionsTests(SynchronousTestCase):
    """
    The limit options of C{twistd realtime}: defaults, values, refusals.
    """

    def options(self, *argv: str) -> Options:
        options = Options()
        options["api-key-file"] = self.mktemp()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        Safe without configuration: the total from the open-file limit, 1000
        per address (a carrier-grade NAT), 32 per uid, the loopback trusted.
        """
        o = self.options()
        self.assertEqual(o["max-connections"], defaultMaxConnections())
        self.assertEqual((o["max-connections-per-ip"], o["max-connections-per-uid"]), (1000, 32))
        self.assertEqual(o["client-rate-limit"], RateLimit(100.0, 200.0))
        self.assertEqual(o["api-rate-limit"], RateLimit(1000.0, 2000.0))
        self.assertEqual(o["proxy-trust"].clientOf("127.0.0.1", "203.0.113.1"), "203.0.113.1")

    def test_values(self) -> None:
        """
        0 turns a limit off; --trust-proxy replaces the default list.
        """
        o = self.options(
            "--max-connections", "0", "--client-rate", "0", "--api-rate", "5:10",
            "--trust-proxy", "10.0.0.0/8", "--trust-proxy", "192.0.2.1",
        )  # fmt: skip
        self.assertEqual((o["max-connections"], o["client-rate-limit"]), (0, None))
        self.assertEqual(o["api-rate-limit"], RateLimit(5.0, 10.0))
        self.assertEqual(o["proxy-trust"].clientOf("127.0.0.1", "203.0.113.1"), "127.0.0.1")
        self.assertEqual(o["proxy-trust"].clientOf("192.0.2.1", "203.0.113.1"), "203.0.113.1")

    def test_refused(self) -> None:
        """
        Bad values stop the start with a message naming the option.
        """
        for argv, named in (
            (["--max-connections-per-ip", "-1"], "--max-connections-per-ip"),
            (["--max-connections-per-uid", "many"], "--max-connections-per-uid"),
            (["--client-rate", "fast"], "--client-rate"),
            (["--api-rate", "1:0"], "--api-rate"),
            (["--trust-proxy", "proxy.example"], "--trust-proxy"),
        ):
            e = self.assertRaises(usage.UsageError, self.options, *argv)
            self.assertIn(named, str(e))
