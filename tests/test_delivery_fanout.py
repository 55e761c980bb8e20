"""
Tests for L{realtime.delivery.fanout}.
"""

from contextlib import ExitStack
from typing import Any, Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
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
        for n in range(126):
            payload = bytes(range(n))
            self.assertEqual(frameMessage(payload), bytes((0x81, n)) + payload)
            self.assertEqual(frameMessage(payload, True), bytes((0x82, n)) + payload)

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

    def runTurns(self, ds: list[Deferred[int]], sessions: Sequence[FakeSession], limit: int = 100) -> list[list[int]]:
        """
        Run turns until every one of C{ds} fired.

        @return: for each turn, how many frames each session got in it.
        """
        turns = []
        before = [len(s.sent) for s in sessions]
        while not all(d.called for d in ds):
            self.assertLess(len(turns), limit, "the deliveries never finished")
            self.clock.advance(0)
            after = [len(s.sent) for s in sessions]
            turns.append([b - a for a, b in zip(before, after, strict=True)])
            before = after
        return turns

    def test_sameAudienceTogether(self) -> None:
        """
        Deliveries waiting for the same audience are written together: each
        session gets all their frames in the same reactor turn, in order,
        and a turn writes at most C{chunkSize} frames.
        """
        sessions = tuple(FakeSession(str(i)) for i in range(25))
        ds = [self.fanout.deliver(sessions, Frame(b"m%d" % n)) for n in range(3)]
        other = self.fanout.deliver(tuple(sessions[:5]), Frame(b"other"))
        self.clock.advance(0)
        self.assertEqual([len(s.sent) for s in sessions[:5]], [3] * 3 + [0, 0])
        turns = [[3] * 3 + [0] * 22] + self.runTurns([*ds, other], sessions)
        for turn in turns:
            self.assertLessEqual(sum(turn), 10)
            self.assertTrue(set(turn[5:]) <= {0, 3}, turn)
        self.assertEqual([self.successResultOf(d) for d in ds], [25, 25, 25])
        self.assertEqual(self.successResultOf(other), 5)
        self.assertEqual(sessions[0].sent, [(b"m0", False), (b"m1", False), (b"m2", False), (b"other", False)])
        self.assertEqual(sessions[24].sent, [(b"m0", False), (b"m1", False), (b"m2", False)])

    def test_joinsTheSweepHalfway(self) -> None:
        """
        A delivery to the audience another one is halfway through joins it
        where it stands: from there on each session gets both frames in the
        same turn (one send); then it comes round to the sessions it missed.
        """
        sessions = tuple(FakeSession(str(i)) for i in range(25))
        first = self.fanout.deliver(sessions, Frame(b"first"))
        self.clock.advance(0)
        self.assertEqual([len(s.sent) for s in sessions], [1] * 10 + [0] * 15)
        second = self.fanout.deliver(sessions, Frame(b"second"))
        turns = self.runTurns([first, second], sessions)
        for i in range(10, 25):
            self.assertIn(2, [turn[i] for turn in turns], f"session {i} got the two frames apart")
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (25, 25))
        for session in sessions:
            self.assertEqual(session.texts, ["first", "second"])
        self.assertEqual(self.fanout.pending, 0)

    def test_newAudienceWaits(self) -> None:
        """
        A delivery to another snapshot (sessions connected or left since)
        waits until the sweep ahead of it is done, and what comes after it
        waits for it: the same session is never sent them out of order.
        """
        sessions = tuple(FakeSession(str(i)) for i in range(25))
        grown = sessions + (FakeSession("new"),)
        ds = [self.fanout.deliver(sessions, Frame(b"a"))]
        self.clock.advance(0)
        ds.append(self.fanout.deliver(grown, Frame(b"b")))
        ds.append(self.fanout.deliver(sessions, Frame(b"c")))
        self.runTurns(ds, grown)
        self.assertEqual([self.successResultOf(d) for d in ds], [25, 26, 25])
        for session in sessions:
            self.assertEqual(session.texts, ["a", "b", "c"])
        self.assertEqual(grown[-1].texts, ["b"])

    def test_manyWaitingBoundedTurns(self) -> None:
        """
        However many deliveries sweep together, a turn writes at most
        C{chunkSize} frames, or one session's worth when that is more.
        """
        sessions = tuple(FakeSession(str(i)) for i in range(25))
        ds = [self.fanout.deliver(sessions, Frame(b"%d" % n)) for n in range(4)]
        turns = self.runTurns(ds, sessions)
        self.assertTrue(all(sum(turn) <= 10 for turn in turns), turns)
        more = [self.fanout.deliver(sessions, Frame(b"%d" % n)) for n in range(4, 17)]
        turns = self.runTurns(more, sessions)
        self.assertTrue(all(sum(turn) == 13 for turn in turns), turns)
        self.assertEqual([s.texts for s in sessions], [[str(n) for n in range(17)]] * 25)

    def test_sessionsPerTurn(self) -> None:
        """
        A turn visits at most C{sessionsPerTurn} sessions, however few
        frames that writes; a broadcast asked for between two turns goes
        out with the first in the same turn to every session not yet
        visited, so the short turns are what lets it join.
        """
        fanout = Fanout(self.clock, chunkSize=8, sessionsPerTurn=4)
        sessions = tuple(FakeSession(str(i)) for i in range(10))
        first = fanout.deliver(sessions, Frame(b"first"))
        self.clock.advance(0)
        self.assertEqual([len(s.sent) for s in sessions], [1] * 4 + [0] * 6)
        second = fanout.deliver(sessions, Frame(b"second"))
        turns = self.runTurns([first, second], sessions)
        self.assertEqual([sum(1 for n in turn if n) for turn in turns], [4, 4, 2])
        self.assertEqual(turns[0][4:8] + turns[1][8:], [2] * 6)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (10, 10))
        for session in sessions:
            self.assertEqual(session.texts, ["first", "second"])

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


#: one step of a random schedule: ask for a delivery to one of the
#: snapshots, ask for a step writing to one session, or let a turn pass
_OPERATIONS = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, 3)),
    st.tuples(st.just("each"), st.integers(0, 11)),
    st.tuples(st.just("turn"), st.just(0)),
    # start a burst, or end the one under way (L{Fanout.burst})
    st.tuples(st.just("burst"), st.just(0)),
)


class FanoutOrderProperties(SynchronousTestCase):
    """
    Whatever arrives when, each session gets its frames in the order they
    were asked for, exactly once, and every count is exact.
    """

    def writer(self, fanout: Fanout, frame: Frame) -> Callable[[FakeSession], int]:
        """
        A step for L{Fanout.each} writing C{frame} to its session.
        """
        return lambda session: fanout.write([session], frame) + 1

    @settings(max_examples=150, deadline=None)
    @given(st.integers(1, 9), st.integers(1, 13), st.lists(_OPERATIONS, max_size=40))
    def test_orderAndCounts(self, chunkSize: int, sessionsPerTurn: int, operations: list[tuple[str, int]]) -> None:
        """
        Deliveries to the same snapshot, to another snapshot of the same
        sessions, to a part of them and to more of them, and L{Fanout.each}
        steps, asked for in any order between reactor turns, inside bursts
        and outside.
        """
        clock = TurnClock()
        fanout = Fanout(clock, chunkSize=chunkSize, sessionsPerTurn=sessionsPerTurn)
        # bursts sweep the 5-session part and everything bigger
        fanout.SWEEP_FROM = 5
        bursts = ExitStack()
        sessions = tuple(FakeSession(str(i)) for i in range(12))
        extra = FakeSession("extra")
        snapshots = [sessions, tuple(sessions), sessions[3:8], (*sessions, extra)]
        expected: dict[FakeSession, list[str]] = {s: [] for s in (*sessions, extra)}
        asked: list[tuple[Deferred[Any], int | None]] = []
        inBurst = False
        for n, (kind, arg) in enumerate(operations):
            text = f"m{n}"
            if kind == "burst":
                if inBurst:
                    bursts.close()
                else:
                    bursts.enter_context(fanout.burst())
                inBurst = not inBurst
            elif kind == "turn":
                bursts.close()
                inBurst = False
                clock.advance(0)
            elif kind == "deliver":
                audience = snapshots[arg]
                for session in audience:
                    expected[session].append(text)
                asked.append((fanout.deliver(audience, Frame(text.encode())), len(audience)))
            else:
                target = sessions[arg]
                expected[target].append(text)
                asked.append((fanout.each([target], self.writer(fanout, Frame(text.encode()))), None))
        bursts.close()
        for _ in range(1000):
            if not fanout.pending:
                break
            clock.advance(0)
        self.assertEqual(fanout.pending, 0)
        for d, count in asked:
            self.assertEqual(self.successResultOf(d), count)
        for session, texts in expected.items():
            self.assertEqual(session.texts, texts, session.uid)


class _Logged(FakeSession):
    """
    A session that also writes down, in one list shared by all, which frame
    it was given when.
    """

    def __init__(self, uid: str, log: list[tuple[str, bytes]]) -> None:
        super().__init__(uid)
        self.log = log

    def sendPrepared(self, frame: Frame) -> bool:
        self.log.append((self.uid, frame.payload))
        return super().sendPrepared(frame)


class BurstTests(SynchronousTestCase):
    """
    Messages that came together (L{Fanout.burst}) are swept together over
    big audiences, at once, in order.
    """

    def setUp(self) -> None:
        self.clock = TurnClock()
        # room in one chunk for a sweep of a few messages over the audience
        self.fanout = Fanout(self.clock, chunkSize=4 * Fanout.SWEEP_FROM, sessionsPerTurn=4 * Fanout.SWEEP_FROM)
        self.log: list[tuple[str, bytes]] = []
        self.sessions = tuple(_Logged(str(i), self.log) for i in range(Fanout.SWEEP_FROM))

    def publish(self, sessions: Sequence[FakeSession], text: bytes) -> Any:
        """
        What the memory broker does: at once if it can, else in turn.
        """
        frame = Frame(text)
        n = self.fanout.deliverNow(sessions, frame)
        return n if n is not None else self.fanout.deliver(sessions, frame)

    def test_sweptTogetherAtOnce(self) -> None:
        """
        Two messages of a burst to one big audience visit each session once
        for both, and are written when the burst ends, without waiting for
        a reactor turn.
        """
        with self.fanout.burst():
            first = self.publish(self.sessions, b"m1")
            second = self.publish(self.sessions, b"m2")
            self.assertEqual(self.log, [])
        everyone = len(self.sessions)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (everyone, everyone))
        self.assertEqual(self.log[:4], [("0", b"m1"), ("0", b"m2"), ("1", b"m1"), ("1", b"m2")])
        self.assertEqual(self.clock.calls, [])

    def test_smallAudiencesAtOnce(self) -> None:
        """
        A push to a few sessions is written at once, burst or not (a Deferred
        per unicast push would cost more than any sweep saves).
        """
        with self.fanout.burst():
            self.assertEqual(self.publish(self.sessions[:3], b"u"), 3)

    def test_orderKept(self) -> None:
        """
        A delivery behind a swept one waits for it, whatever its size: no
        session sees a later message first.
        """
        one = self.sessions[5]
        with self.fanout.burst():
            self.publish([one], b"a")
            self.publish(self.sessions, b"b")
            self.publish([one], b"c")
        self.assertEqual(one.texts, ["a", "b", "c"])
        self.assertEqual(self.fanout.pending, 0)

    def test_behindWaitingWork(self) -> None:
        """
        A burst that starts behind deliveries already waiting for their turn
        does not take an extra chunk now: it waits behind them.
        """
        size = 2 * self.fanout.chunkSize + 1
        big = tuple(FakeSession(str(i)) for i in range(size))
        waiting = self.fanout.deliver(big, Frame(b"old"))
        with self.fanout.burst():
            self.publish(self.sessions, b"new")
        self.assertEqual(self.log, [])
        for _ in range(5):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(waiting), size)
        self.assertEqual({s.texts[0] for s in self.sessions}, {"new"})
