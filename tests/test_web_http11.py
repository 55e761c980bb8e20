"""
Every HTTP request head on every port has a deadline (slowloris), and an
oversized head is answered 431: L{realtime.web.http11} behind the web port
(keep-alive requests, the C{/ws} upgrade of a reused connection) and the
API port, on a C{Clock}; then once on real sockets.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import txaio
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime.api.http import buildApiSite
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.broker.memory import MemoryBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.timers import TimeoutWheel
from realtime.routing.echo import EchoStrategy
from realtime.web.sharedport import SharedPortFactory
from realtime.web.site import buildWebSite
from realtime.websocket.protocol import RealtimeServerProtocol
from tests.serverprocess import ServerProcess
from tests.support import PEER, TolerantTransport, buildFactory, handshake

txaio.use_twisted()

KEY = "k"
#: one complete keep-alive request, and the next one's head
FIRST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SECOND = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"


class _Connections(SynchronousTestCase):
    """
    Connections to a factory on in-memory transports, on a C{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)

    def connect(self, factory: Any) -> tuple[Any, TolerantTransport]:
        protocol = factory.buildProtocol(PEER)
        transport = TolerantTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def feed(self, transport: TolerantTransport, data: bytes) -> None:
        """
        Give the connection's current protocol C{data} (the front hands the
        transport over to another protocol).
        """
        transport.protocol.dataReceived(data)

    def dribble(self, transport: TolerantTransport, data: bytes, every: float, until: float) -> float:
        """
        One byte of C{data} every C{every} seconds until the connection is
        gone or C{until} seconds have passed; the seconds it lasted.
        """
        start = self.clock.seconds()
        for byte in data:
            if transport.disconnecting or self.clock.seconds() - start >= until:
                break
            self.feed(transport, bytes([byte]))
            self.clock.advance(every)
        return self.clock.seconds() - start


class WebPortTests(_Connections):
    """
    The web port: the front hands the first request to twisted.web, whose
    later heads have a deadline too.
    """

    def setUp(self) -> None:
        super().setUp()
        self.ws = buildFactory(AnonymousAuthenticator(), EchoStrategy(), self.clock)
        self.front = SharedPortFactory(self.ws, buildWebSite(self.ws, self.clock), TimeoutWheel(self.clock))

    def test_keepAliveHeadDeadline(self) -> None:
        """
        After one complete request, a second head sent one byte every 3 s
        is cut off at the 10 s deadline (it used to be held forever: every
        byte restarted twisted.web's idle timer).
        """
        _, transport = self.connect(self.front)
        self.feed(transport, FIRST)
        self.assertIn(b"200 OK", transport.value())
        lasted = self.dribble(transport, SECOND, every=3, until=120)
        self.assertTrue(transport.aborted)
        self.assertLessEqual(lasted, 12)

    def test_keepAliveInTime(self) -> None:
        """
        Keep-alive requests that arrive whole are served, each under its own
        deadline, however long the connection lives.
        """
        _, transport = self.connect(self.front)
        for _ in range(5):
            self.feed(transport, FIRST)
            self.clock.advance(8)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 5)
        self.assertFalse(transport.disconnecting)

    def test_upgradeOnReusedConnection(self) -> None:
        """
        The C{/ws} upgrade of a reused connection has the deadline of any
        head; once upgraded, the WebSocket is not cut off by it.
        """
        _, slow = self.connect(self.front)
        self.feed(slow, FIRST)
        self.dribble(slow, handshake("/ws"), every=3, until=120)
        self.assertTrue(slow.aborted)
        _, fast = self.connect(self.front)
        self.feed(fast, FIRST)
        self.feed(fast, handshake("/ws"))
        self.clock.advance(0)
        self.assertIsInstance(fast.protocol, RealtimeServerProtocol)
        self.clock.advance(25)
        self.assertFalse(fast.disconnecting)

    def test_oversizedHead(self) -> None:
        """
        A head over 16 KiB gets a 431, not a silent close.
        """
        _, transport = self.connect(self.front)
        self.feed(transport, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:80])
        self.assertTrue(transport.disconnecting)

    def test_oversizedKeepAliveHead(self) -> None:
        """
        The same for a later request of a keep-alive connection, and for
        a head of too many lines.
        """
        _, transport = self.connect(self.front)
        self.feed(transport, FIRST)
        transport.clear()
        self.feed(transport, b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 600 + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:80])


class ApiPortTests(_Connections):
    """
    The API port: every head, the first one included.
    """

    def setUp(self) -> None:
        super().setUp()
        broker = MemoryBroker(SessionRegistry(), Fanout(self.clock))
        self.site = buildApiSite(broker, KEY, 1024, self.clock)

    def test_firstHeadDeadline(self) -> None:
        """
        A first head trickled in is cut off at 10 s.
        """
        _, transport = self.connect(self.site)
        lasted = self.dribble(transport, SECOND, every=3, until=120)
        self.assertTrue(transport.aborted)
        self.assertLessEqual(lasted, 12)

    def test_silentConnection(self) -> None:
        """
        A connection that sends nothing is closed at the deadline too.
        """
        _, transport = self.connect(self.site)
        self.clock.advance(9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_keepAliveHeadDeadline(self) -> None:
        """
        And a keep-alive head after a complete request.
        """
        _, transport = self.connect(self.site)
        self.feed(transport, b"GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        lasted = self.dribble(transport, SECOND, every=3, until=120)
        self.assertTrue(transport.aborted)
        self.assertLessEqual(lasted, 12)

    def test_oversizedHeader(self) -> None:
        """
        One header over 16 KiB is answered 431 with the API's JSON error
        (it used to be closed with no answer).
        """
        _, transport = self.connect(self.site)
        self.feed(transport, b"GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 20000 + b"\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 431 "), head)
        self.assertEqual(json.loads(body)["error"]["code"], "headers_too_large")
        self.assertTrue(transport.disconnecting)

    def test_tooManyHeaders(self) -> None:
        """
        As is a head of more than 500 header lines.
        """
        _, transport = self.connect(self.site)
        self.feed(transport, b"GET /api/stats HTTP/1.1\r\n" + b"X-A: b\r\n" * 501 + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:80])

    def test_largestHeadServed(self) -> None:
        """
        A head just within the limits (500 header lines) is served.
        """
        _, transport = self.connect(self.site)
        self.feed(transport, b"GET /api/stats HTTP/1.1\r\nAuthorization: Bearer k\r\n" + b"X-A: b\r\n" * 499 + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "), transport.value()[:80])


def _held(port: int, first: bytes, seconds: float) -> float:
    """
    Send C{first} whole, then a second head one byte every half second:
    how long the server kept the connection (at most C{seconds}).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(first)
        s.recv(65536)
        start = time.monotonic()
        try:
            for byte in SECOND:
                s.sendall(bytes([byte]))
                s.settimeout(0.5)
                try:
                    if s.recv(65536) == b"":
                        break
                except TimeoutError:
                    pass
                if time.monotonic() - start > seconds:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        return time.monotonic() - start


class RealSocketTests(SynchronousTestCase):
    """
    A real server with C{--head-timeout 2} cuts trickling keep-alive heads
    off on the web and the API port.
    """

    def test_slowKeepAliveHeads(self) -> None:
        server = ServerProcess("--head-timeout", "2", apiKey=KEY).start()
        try:
            web = _held(server.ports["port"], FIRST, 20)
            api = _held(server.ports["api-port"], b"GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n", 20)
        finally:
            server.stop()
        self.assertLess(web, 6)
        self.assertLess(api, 6)
