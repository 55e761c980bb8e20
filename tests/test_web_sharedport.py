"""
Tests for L{realtime.web.sharedport}: one port, WebSocket or web by the first
request.
"""

import txaio
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.delivery.timers import TimeoutWheel
from realtime.routing.echo import EchoStrategy
from realtime.web.sharedport import MAX_HEAD, SharedPortFactory, isUpgradeRequest
from realtime.web.site import buildWebSite
from realtime.websocket.protocol import RealtimeServerProtocol
from tests.support import PEER, TolerantTransport, buildFactory, clientFrame, handshake, serverFrames, splitResponse

txaio.use_twisted()


class IsUpgradeTests(SynchronousTestCase):
    """
    L{isUpgradeRequest} reads the Upgrade header, whatever its case.
    """

    def test_upgrade(self) -> None:
        """
        C{Upgrade: websocket} in any case is an upgrade; other upgrades and
        plain requests are not.
        """
        self.assertTrue(isUpgradeRequest(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket"))
        self.assertTrue(isUpgradeRequest(b"GET / HTTP/1.1\r\nupgrade:WebSocket"))
        self.assertFalse(isUpgradeRequest(b"GET / HTTP/1.1\r\nUpgrade: h2c"))
        self.assertFalse(isUpgradeRequest(b"GET / HTTP/1.1\r\nHost: websocket"))
        self.assertFalse(isUpgradeRequest(b"GET /upgrade:websocket HTTP/1.1"))


class FrontTests(SynchronousTestCase):
    """
    The sniffer hands the connection over with the bytes it read.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        self.ws = buildFactory(AnonymousAuthenticator(), EchoStrategy(), self.clock)
        self.front = SharedPortFactory(self.ws, buildWebSite(self.ws, self.clock), TimeoutWheel(self.clock), headTimeout=5)
        self.transport = TolerantTransport()
        self.proto = self.front.buildProtocol(PEER)
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    def test_websocket(self) -> None:
        """
        An upgrade request, even split over reads, reaches Autobahn whole and
        the connection is then Autobahn's.
        """
        data = handshake("/ws")
        self.proto.dataReceived(data[:20])
        self.assertEqual(self.transport.value(), b"")
        self.proto.dataReceived(data[20:] + clientFrame(b"ping me"))
        self.clock.advance(0)
        self.assertIsInstance(self.transport.protocol, RealtimeServerProtocol)
        head, rest = splitResponse(self.transport.value())
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        self.assertEqual(serverFrames(rest), [(1, b"ping me")])
        self.assertEqual(len(self.ws.registry), 1)

    def test_web(self) -> None:
        """
        A plain GET is served by twisted.web: the page at C{/}.
        """
        self.proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = self.transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK"), response[:100])
        self.assertIn(b"<title>realtime</title>", response)

    def test_webNotFound(self) -> None:
        """
        Unknown paths are twisted.web's 404s.
        """
        self.proto.dataReceived(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 404"))

    def test_oversizedHead(self) -> None:
        """
        A head larger than L{MAX_HEAD} without an end goes to twisted.web,
        which drops it, instead of being buffered forever.
        """
        self.proto.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD + 10))
        self.assertNotIsInstance(self.transport.protocol, type(self.proto))
        self.assertTrue(self.transport.disconnecting)

    def test_silentClientDropped(self) -> None:
        """
        A connection that never finishes its request head is aborted.
        """
        self.proto.dataReceived(b"GET / HT")
        self.clock.advance(4)
        self.assertFalse(self.transport.aborted)
        self.clock.advance(2)
        self.assertTrue(self.transport.aborted)

    def test_timeoutCancelledOnHandOver(self) -> None:
        """
        Handing over cancels the head timeout.
        """
        self.proto.dataReceived(handshake())
        self.clock.advance(60)
        self.assertFalse(self.transport.aborted)
        self.assertEqual(len(self.front.wheel), 0)

    def test_lostBeforeHead(self) -> None:
        """
        A connection lost before its head leaves no timer.
        """
        self.proto.dataReceived(b"GET")
        self.proto.connectionLost(None)
        self.assertEqual(len(self.front.wheel), 0)
