"""
Tests for L{realtime.delivery.fanout}.
"""

from twisted.trial.unittest import SynchronousTestCase

from realtime.delivery.fanout import Fanout, Frame, frameMessage
from tests.fakes import FakeSession, TurnClock


class FrameTests(SynchronousTestCase):
    """
    Frames are RFC 6455 server frames: FIN, opcode, unmasked length.
    """

    def test_short(self) -> None:
        """
        Up to 125 bytes the length fits in the second byte.
        """
        self.assertEqual(frameMessage(b"hello"), b"\x81\x05hello")
        self.assertEqual(frameMessage(b"\x00\x01", True), b"\x82\x02\x00\x01")
        self.assertEqual(frameMessage(b""), b"\x81\x00")

    def test_medium(self) -> None:
        """
        126..65535 bytes use the 16-bit length.
        """
        self.assertEqual(frameMessage(b"x" * 126)[:4], b"\x81\x7e\x00\x7e")
        self.assertEqual(frameMessage(b"x" * 65535)[:4], b"\x81\x7e\xff\xff")

    def test_long(self) -> None:
        """
        65536 bytes and more use the 64-bit length.
        """
        wire = frameMessage(b"x" * 65536, True)
        self.assertEqual(wire[:10], b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00")
        self.assertEqual(len(wire), 65536 + 10)

    def test_frame(self) -> None:
        """
        L{Frame} keeps the payload for compressed sessions and the wire bytes
        for the rest.
        """
        f = Frame(b"hi", False)
        self.assertEqual((f.payload, f.isBinary, f.wire), (b"hi", False, b"\x81\x02hi"))


class FanoutTests(SynchronousTestCase):
    """
    Small deliveries finish at once; large ones are chunked over reactor
    turns without reordering.
    """

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.fanout = Fanout(self.clock, chunkSize=10)

    def test_small(self) -> None:
        """
        An audience within one chunk is written at once; closed sessions are
        not counted.
        """
        sessions = [FakeSession("u"), FakeSession("v"), FakeSession("w", open=False)]
        d = self.fanout.deliver(sessions, Frame(b"m"))
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(sessions[0].sent, [(b"m", False)])
        self.assertEqual(sessions[2].sent, [])

    def test_chunked(self) -> None:
        """
        A large audience is written C{chunkSize} sessions per reactor turn.
        """
        sessions = [FakeSession(str(i)) for i in range(25)]
        d = self.fanout.deliver(sessions, Frame(b"m"))
        self.assertNoResult(d)
        self.assertEqual(sum(len(s.sent) for s in sessions), 0)
        self.clock.advance(0)
        self.assertEqual(sum(len(s.sent) for s in sessions), 10)
        self.assertEqual(self.fanout.pending, 1)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 25)
        self.assertEqual(self.fanout.pending, 0)

    def test_orderKept(self) -> None:
        """
        A small delivery asked for while a large one is in progress waits its
        turn, so no session sees the later message first.
        """
        sessions = [FakeSession(str(i)) for i in range(25)]
        big = self.fanout.deliver(sessions, Frame(b"first"))
        small = self.fanout.deliver([sessions[-1]], Frame(b"second"))
        self.assertNoResult(small)
        for _ in range(5):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(big), 25)
        self.assertEqual(self.successResultOf(small), 1)
        self.assertEqual(sessions[-1].sent, [(b"first", False), (b"second", False)])

    def test_sessionClosesMidway(self) -> None:
        """
        A session that closes between chunks is skipped and not counted.
        """
        sessions = [FakeSession(str(i)) for i in range(15)]
        d = self.fanout.deliver(sessions, Frame(b"m"))
        self.clock.advance(0)
        sessions[14].open = False
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 14)

    def test_sameAudienceTogether(self) -> None:
        """
        Deliveries waiting for the same audience are written together: each
        session gets all their frames in the same reactor turn, in order.
        """
        sessions = tuple(FakeSession(str(i)) for i in range(25))
        ds = [self.fanout.deliver(sessions, Frame(b"m%d" % n)) for n in range(3)]
        other = self.fanout.deliver(tuple(sessions[:5]), Frame(b"other"))
        self.clock.advance(0)
        self.assertEqual([len(s.sent) for s in sessions[:12]], [3] * 10 + [0, 0])
        for _ in range(3):
            self.clock.advance(0)
        self.assertEqual([self.successResultOf(d) for d in ds], [25, 25, 25])
        self.assertEqual(self.successResultOf(other), 5)
        self.assertEqual(sessions[0].sent, [(b"m0", False), (b"m1", False), (b"m2", False), (b"other", False)])
        self.assertEqual(sessions[24].sent, [(b"m0", False), (b"m1", False), (b"m2", False)])

    def test_eachAtOnce(self) -> None:
        """
        Steps that fit in one chunk, with nothing waiting, run at once.
        """
        seen: list[int] = []
        d = self.fanout.each([1, 2, 3], lambda n: seen.append(n) or 3)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(seen, [1, 2, 3])

    def test_eachChunked(self) -> None:
        """
        Steps beyond one chunk's cost go on in later turns, C{chunkSize} of
        cost per turn (the last step of a turn may overshoot it).
        """
        seen: list[int] = []
        d = self.fanout.each(range(12), lambda n: seen.append(n) or 4)
        self.assertEqual(seen, [0, 1, 2])
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(seen, list(range(6)))
        self.clock.advance(0)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(seen, list(range(12)))
        self.successResultOf(d)
        self.assertEqual(self.fanout.pending, 0)

    def test_eachInOrderWithDeliveries(self) -> None:
        """
        Steps wait behind a chunked delivery asked for before them, and a
        delivery asked for after them waits for their end; within one turn's
        budget both share it.
        """
        sessions = [FakeSession(str(i)) for i in range(15)]
        last = sessions[-1]
        big = self.fanout.deliver(sessions, Frame(b"first"))
        steps = self.fanout.each([last], lambda s: self.fanout.write([s], Frame(b"second")) + 1)
        after = self.fanout.deliver([last], Frame(b"third"))
        self.assertNoResult(steps)
        for _ in range(3):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(big), 15)
        self.successResultOf(steps)
        self.assertEqual(self.successResultOf(after), 1)
        self.assertEqual(last.texts, ["first", "second", "third"])
