"""
Tests for the per-connection output budget (L{realtime.websocket.sending}): every byte
written to a connection, whatever wrote it, counts against
C{maxQueuedBytes}; a session over it is closed with 1013 and aborted soon
after; a session whose peer stops reading is no longer read from; and a
message may have only so many frames (L{realtime.websocket._autobahn.rfc6455}).

A peer that does not read is modelled as the transport does it: it calls
the session's C{pauseProducing} once its buffer passes the high-water mark
(an in-memory transport cannot tell how much of what it took is unread).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet import abstract, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from realtime import closecodes
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.auth.firstpacket import FirstPacketAuthenticator
from realtime.delivery.fanout import Frame
from realtime.delivery.writer import unsentBytes
from realtime.routing.echo import EchoStrategy
from realtime.routing.uid import UidStrategy
from tests.support import ProtocolTestCase, buildFactory, clientFrame, closeCode, closeFrame, handshake

#: the budget of these tests
BUDGET = 1000


class BudgetTestCase(ProtocolTestCase):
    """
    One open session under a small budget, with nothing written yet.
    """

    strategy: object = EchoStrategy()

    def setUp(self) -> None:
        super().setUp()
        self.serve(AnonymousAuthenticator(), self.strategy, maxQueuedBytes=BUDGET, slowConsumerTimeout=30)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    def assertDroppedSlow(self, frames: list[tuple[int, bytes]]) -> None:
        """
        The last of C{frames} is a 1013 close frame, the only close frame,
        and the drop was counted once.
        """
        self.assertEqual([op for op, _ in frames].count(8), 1, [op for op, _ in frames])
        self.assertEqual(frames[-1][0], 8)
        self.assertEqual(closeCode(frames[-1][1]), (closecodes.SLOW_CONSUMER, "slow consumer"))
        self.assertEqual(self.factory.slowConsumers, 1)


class EveryWriteCountsTests(BudgetTestCase):
    """
    While the peer does not read, replies, error frames and pongs count,
    not only deliveries.
    """

    def test_replies(self) -> None:
        """
        Echoed replies past the budget drop the session.
        """
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"x" * 300) * 5)
        frames = self.frames(self.transport)
        self.assertEqual([op for op, _ in frames], [1, 1, 1, 8])
        self.assertDroppedSlow(frames)

    def test_pongs(self) -> None:
        """
        Pongs count.
        """
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"p" * 125, opcode=9) * 20)
        frames = self.frames(self.transport)
        self.assertEqual({op for op, _ in frames[:-1]}, {10})
        self.assertEqual(len(frames), BUDGET // 127 + 1)
        self.assertDroppedSlow(frames)

    def test_deliveriesAndReplies(self) -> None:
        """
        Deliveries and replies share one budget.
        """
        self.proto.pauseProducing()
        self.assertTrue(self.proto.sendPrepared(Frame(b"d" * 600)))
        self.proto.dataReceived(clientFrame(b"r" * 600))
        frames = self.frames(self.transport)
        self.assertEqual([op for op, _ in frames], [1, 8])
        self.assertDroppedSlow(frames)
        self.assertFalse(self.proto.sendPrepared(Frame(b"late")))

    def test_oneTurnCounts(self) -> None:
        """
        What one reactor turn queues counts before the transport has it:
        one read answered past the budget drops the session even before the
        transport says its peer is behind.
        """
        self.proto.dataReceived(clientFrame(b"x" * 300) * 5)
        frames = self.frames(self.transport)
        self.assertEqual([op for op, _ in frames], [1, 1, 1, 8])
        self.assertDroppedSlow(frames)

    def test_sentIsForgotten(self) -> None:
        """
        What the transport took while its peer keeps up does not count:
        many turns of replies, each under the budget, keep the session.
        """
        for _ in range(10):
            self.proto.dataReceived(clientFrame(b"x" * 300) * 2)
            self.assertEqual(len(self.frames(self.transport)), 2)
        self.assertEqual(self.factory.slowConsumers, 0)

    def test_resumeForgets(self) -> None:
        """
        Once the transport drained, counting starts again from nothing.
        """
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"x" * 300) * 3)
        self.proto.resumeProducing()
        self.frames(self.transport)
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"x" * 300) * 3)
        self.assertEqual(len(self.frames(self.transport)), 3)
        self.assertEqual(self.factory.slowConsumers, 0)


class DropTests(BudgetTestCase):
    """
    A session over its budget goes promptly, whether or not its peer reads
    our close frame.
    """

    def overBudget(self) -> None:
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"x" * 600) * 2)

    def test_abortedSoon(self) -> None:
        """
        A peer that never answers our close frame is aborted a couple of
        seconds later, not after the slow-consumer timeout.
        """
        self.overBudget()
        self.assertDroppedSlow(self.frames(self.transport))
        self.assertFalse(self.transport.aborted)
        self.clock.advance(2.5)
        self.assertTrue(self.transport.aborted)

    def test_nothingAfterClose(self) -> None:
        """
        After the close frame nothing more is written: no pong, no reply,
        no delivery.
        """
        self.overBudget()
        self.frames(self.transport)
        self.proto.dataReceived(clientFrame(b"p", opcode=9) + clientFrame(b"x"))
        self.assertFalse(self.proto.sendPrepared(Frame(b"late")))
        self.assertEqual(self.frames(self.transport), [])

    def test_notReadAnyMore(self) -> None:
        """
        Nothing more is read from a dropped session's peer.
        """
        self.overBudget()
        self.assertEqual(self.transport.producerState, "paused")


class ReadingPausedTests(BudgetTestCase):
    """
    A peer that does not read what it is sent is not read from either, so
    its requests stop earning answers until it catches up.
    """

    def test_paused(self) -> None:
        """
        The transport's pause stops reading from the peer.
        """
        self.proto.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")

    def test_resumed(self) -> None:
        """
        Once the transport drained, reading resumes.
        """
        self.proto.pauseProducing()
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_keepaliveWaits(self) -> None:
        """
        A session we stopped reading is not dropped for silence: the
        slow-consumer timeout decides about it.
        """
        self.proto.pauseProducing()
        self.clock.advance(25)
        self.proto.keepalive(self.clock.seconds(), 10.0)
        self.assertFalse(self.transport.aborted)
        self.assertEqual(self.frames(self.transport), [])


class ErrorFramesTests(BudgetTestCase):
    """
    Routing uid answers every message with an error frame.
    """

    strategy = UidStrategy()

    def test_errorFrames(self) -> None:
        """
        Error frames answering empty messages count.
        """
        self.proto.pauseProducing()
        self.proto.dataReceived(clientFrame(b"") * 100)
        frames = self.frames(self.transport)
        self.assertLess(len(frames), 100)
        self.assertDroppedSlow(frames)

    def test_emptyFramesFlood(self) -> None:
        """
        A flood of empty messages in one read ends in a 1013 close, not in
        one error frame each.
        """
        self.proto.dataReceived(clientFrame(b"") * 1000)
        frames = self.frames(self.transport)
        self.assertLess(len(frames), 20)
        self.assertDroppedSlow(frames)


class MessageFramesTests(ProtocolTestCase):
    """
    A message may have at most C{maxMessageFrames} frames.
    """

    def setUp(self) -> None:
        super().setUp()
        self.serve(AnonymousAuthenticator(), EchoStrategy(), maxMessageFrames=4)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    def test_atLimit(self) -> None:
        """
        A message of exactly the limit's frames is delivered.
        """
        parts = [clientFrame(b"a", fin=False)] + [clientFrame(b"b", opcode=0, fin=False)] * 2
        self.proto.dataReceived(b"".join(parts) + clientFrame(b"c", opcode=0))
        self.assertEqual(self.frames(self.transport), [(1, b"abbc")])

    def test_overLimit(self) -> None:
        """
        One frame more closes with 1009 and says why.
        """
        parts = [clientFrame(b"a", fin=False)] + [clientFrame(b"b", opcode=0, fin=False)] * 3
        self.proto.dataReceived(b"".join(parts) + clientFrame(b"c", opcode=0))
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(opcode, 8)
        code, reason = closeCode(payload)
        self.assertEqual(code, closecodes.MESSAGE_TOO_BIG)
        self.assertIn("more than 4 frames", reason)

    def test_emptyContinuationsForever(self) -> None:
        """
        Empty continuation frames cannot keep a message open: the close
        comes at the first frame over the limit.
        """
        self.proto.dataReceived(clientFrame(b"", fin=False))
        for _ in range(3):
            self.proto.dataReceived(clientFrame(b"", opcode=0, fin=False))
        self.assertEqual(self.frames(self.transport), [])
        self.proto.dataReceived(clientFrame(b"", opcode=0, fin=False))
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(closeCode(payload)[0], closecodes.MESSAGE_TOO_BIG)

    def test_countPerMessage(self) -> None:
        """
        The count starts again with each message; single-frame messages
        and control frames between fragments do not count.
        """
        message = clientFrame(b"a", fin=False) + clientFrame(b"p", opcode=9)
        message += clientFrame(b"b", opcode=0, fin=False) * 2 + clientFrame(b"c", opcode=0)
        self.proto.dataReceived(message * 3 + clientFrame(b"single") * 10)
        frames = self.frames(self.transport)
        self.assertEqual([payload for op, payload in frames if op == 1], [b"abbc"] * 3 + [b"single"] * 10)


class UnsentBytesTests(SynchronousTestCase):
    """
    L{unsentBytes} reads what Twisted holds for a TCP transport, under any
    number of wrappers (TLS), and says when it cannot tell.
    """

    def held(self) -> abstract.FileDescriptor:
        descriptor = abstract.FileDescriptor(MemoryReactor())
        descriptor.dataBuffer = b"x" * 10
        descriptor.offset = 3
        descriptor._tempDataLen = 5
        return descriptor

    def test_tcp(self) -> None:
        """
        The unsent rest of the buffer, and what waits to join it.
        """
        self.assertEqual(unsentBytes(self.held()), 12)

    def test_wrapped(self) -> None:
        """
        A wrapper's bytes are the wrapped transport's.
        """
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.makeConnection(self.held())
        self.assertEqual(unsentBytes(wrapper), 12)

    def test_unknown(self) -> None:
        """
        An in-memory transport cannot tell.
        """
        self.assertIsNone(unsentBytes(StringTransport()))


class Closer(Protocol):
    """
    Opens a session as uid C{u1}, then closes it: with a close frame, or by
    aborting the TCP connection.
    """

    def __init__(self, abort: bool) -> None:
        self.abort = abort
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(handshake("/") + clientFrame(b"u1"))

    def dataReceived(self, data: bytes) -> None:
        if self.abort:
            self.transport.abortConnection()
        else:
            self.transport.write(closeFrame(closecodes.NORMAL))

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


class NothingLeftTests(TestCase):
    """
    A closed connection is freed by reference counting alone, over real
    sockets: the tuned collector (L{realtime.ops.gctuning}) would leave cyclic
    garbage for millions of allocations, tens of MB after a few thousand
    reconnects.
    """

    @inlineCallbacks
    def closedAndFreed(self, abort: bool) -> Any:
        factory = buildFactory(FirstPacketAuthenticator(reactor, 10.0, None), UidStrategy(), reactor)
        factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=0)
        self.addCleanup(factory.wheel.stop)
        sessions: list[weakref.ref[Any]] = []
        opened = factory.sessionOpened
        factory.sessionOpened = lambda s: (sessions.append(weakref.ref(s)), opened(s))  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        for _ in range(3):
            closer = Closer(abort)
            reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda closer=closer: closer))
            yield closer.lost
        while len(factory.registry):
            yield deferLater(reactor, 0.01, lambda: None)
        # Autobahn's batched timers (close handshake, connection drop) let go
        yield deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(len(sessions), 3)
        self.assertEqual([ref() for ref in sessions], [None] * 3)

    def test_closedCleanly(self) -> Any:
        """
        The peer closes with a close frame.
        """
        return self.closedAndFreed(False)

    def test_aborted(self) -> Any:
        """
        The peer drops the TCP connection.
        """
        return self.closedAndFreed(True)
