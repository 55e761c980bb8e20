"""
Tests for L{realtime.websocket._autobahn.rfc6455}, in memory under a fake clock: what happens to
the TCP connection once the closing handshake is done, the exact message
limit, and messages after our close frame.  (End to end, over real sockets
and with compression, C{tests/test_conformance.py} checks the same.)
"""

from __future__ import annotations

import txaio
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime import closecodes
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.routing.echo import EchoStrategy
from realtime.websocket._autobahn.rfc6455 import strictOptions
from tests.support import (
    PEER,
    ProtocolTestCase,
    TolerantTransport,
    buildFactory,
    clientFrame,
    closeCode,
    closeFrame,
    handshake,
)

txaio.use_twisted()


class OptionsTests(SynchronousTestCase):
    """
    L{strictOptions}.
    """

    def test_budgetOneOver(self) -> None:
        """
        Autobahn gets one byte more than the limit; no limit stays none.
        """
        options = strictOptions(100)
        self.assertEqual((options["maxMessagePayloadSize"], options["maxFramePayloadSize"]), (101, 101))
        self.assertEqual(strictOptions(0)["maxMessagePayloadSize"], 0)
        self.assertEqual((options["failByDrop"], options["echoCloseCodeReason"]), (False, True))

    def test_factoryApplies(self) -> None:
        """
        Every factory of ours gets them, whoever wires it.
        """
        factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), Clock(), maxMessageSize=100)
        self.assertEqual((factory.failByDrop, factory.maxMessagePayloadSize, factory.maxMessageSize), (False, 101, 100))


class LingerTests(ProtocolTestCase):
    """
    A clean close flushes, and gives up on a peer that does not read.
    """

    def setUp(self) -> None:
        super().setUp()
        self.serve(AnonymousAuthenticator(), EchoStrategy(), slowConsumerTimeout=30)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    def closeCleanly(self) -> None:
        """
        The server closes; the peer's close answers it.
        """
        self.proto.close(closecodes.GOING_AWAY, "bye")
        self.proto.dataReceived(closeFrame(closecodes.GOING_AWAY))

    def test_flushedNotAborted(self) -> None:
        """
        Once the peer answered, the connection is closed after what is
        queued is written, not aborted.
        """
        self.closeCleanly()
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.aborted)
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(closeCode(payload), (closecodes.GOING_AWAY, "bye"))

    def test_peerNotReading(self) -> None:
        """
        A connection still open a slow consumer's grace later is aborted.
        """
        self.closeCleanly()
        self.clock.advance(29)
        self.assertFalse(self.transport.aborted)
        self.clock.advance(2)
        self.assertTrue(self.transport.aborted)

    def test_goneInTime(self) -> None:
        """
        A connection that goes leaves no timer behind.
        """
        self.closeCleanly()
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.factory.wheel), 0)
        self.clock.advance(60)
        self.assertFalse(self.transport.aborted)

    def test_failureStillCloses(self) -> None:
        """
        A protocol error followed by the peer's close, in one read: the
        close frame (1002) is written, then the connection closed.
        """
        self.proto.dataReceived(clientFrame(b"x", opcode=5) + closeFrame(closecodes.NORMAL))
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(closeCode(payload)[0], closecodes.PROTOCOL_ERROR)
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.aborted)


class DeliveryTests(SynchronousTestCase):
    """
    Which messages are handed on: up to the exact limit (Autobahn's budget
    is one byte over it), and none after our close frame.
    """

    def setUp(self) -> None:
        self.clock = clock = Clock()
        loop = replace_loop(clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        self.factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), clock, maxMessageSize=10)

    def send(self, *frames: bytes) -> bytes:
        proto = self.factory.buildProtocol(PEER)
        transport = TolerantTransport()
        proto.makeConnection(transport)
        proto.dataReceived(handshake())
        self.clock.advance(0)
        transport.clear()
        proto.dataReceived(b"".join(frames))
        self.clock.advance(0)
        return transport.value()

    def test_atLimit(self) -> None:
        """
        A message of exactly the limit is delivered.
        """
        self.assertEqual(self.send(clientFrame(b"x" * 10)), b"\x81\x0a" + b"x" * 10)

    def test_overLimit(self) -> None:
        """
        One byte more, which Autobahn lets through, is refused with 1009,
        and nothing after it is handled.
        """
        data = self.send(clientFrame(b"x" * 11), clientFrame(b"after"))
        self.assertEqual(data[0], 0x88)
        self.assertEqual(int.from_bytes(data[2:4], "big"), closecodes.MESSAGE_TOO_BIG)
        self.assertNotIn(b"after", data)

    def test_nothingAfterOurClose(self) -> None:
        """
        A message completing after the server's close frame is not handled:
        no answer is attempted (which Autobahn would refuse with an error).
        """
        proto = self.factory.buildProtocol(PEER)
        transport = TolerantTransport()
        proto.makeConnection(transport)
        proto.dataReceived(handshake())
        proto.close(closecodes.GOING_AWAY, "bye")
        self.clock.advance(0)
        transport.clear()
        proto.dataReceived(clientFrame(b"late"))
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")
