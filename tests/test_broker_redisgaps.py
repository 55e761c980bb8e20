"""
Tests for L{realtime.broker.redisgaps}: what the node does around a gap,
with the history's answers fired by the test in the order it chooses (the
same against a real Redis: tests/redis/test_broker_redishistory.py).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.broker.redisgaps import ChannelGaps
from realtime.values import History, Position, StoredMessage

EPOCH = "e1"


class ScriptedHistory:
    """
    A store whose reads wait for the test: C{reads} holds each read asked
    for, C{(kind, argument, deferred)}.
    """

    def __init__(self) -> None:
        self.reads: list[tuple[str, object, Deferred[object]]] = []

    def positions(self, streams: list[str]) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        self.reads.append(("positions", tuple(streams), d))
        return d

    def history(self, stream: str, since: Position, now: float) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        self.reads.append(("history", since, d))
        return d

    def answer(self, kind: str, result: object) -> object:
        """Fire the oldest waiting read of C{kind} with C{result}; answer its argument."""
        index = next(i for i, read in enumerate(self.reads) if read[0] == kind)
        _, argument, d = self.reads.pop(index)
        d.callback(result)
        return argument

    def fail(self, kind: str) -> None:
        index = next(i for i, read in enumerate(self.reads) if read[0] == kind)
        self.reads.pop(index)[2].errback(RuntimeError("Redis went away"))


def history(*offsets: int, top: int | None = None) -> History:
    messages = tuple(StoredMessage(o, b"%d" % o, False, 0.0, EPOCH) for o in offsets)
    return History(EPOCH, top if top is not None else max(offsets, default=0), messages, True)


class ChannelGapsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = ScriptedHistory()
        self.delivered: list[int] = []
        self.gaps = ChannelGaps(self.clock, self.store, lambda c, o, e, d: self.delivered.append(o), interval=1.0)
        self.gaps.start()
        self.addCleanup(self.gaps.stop)

    def following(self, top: int = 0) -> None:
        self.gaps.track("room")
        self.store.answer("positions", {"room": Position(EPOCH, top)})

    def live(self, *offsets: int) -> None:
        for offset in offsets:
            self.gaps.received("room", offset, EPOCH, b"%d" % offset)

    def test_heldUntilThePositionIsRead(self) -> None:
        """
        Live messages wait for the starting position; those it covers are
        not delivered again, the others are, in order.
        """
        self.gaps.track("room")
        self.live(3, 4)
        self.assertEqual(self.delivered, [])
        self.store.answer("positions", {"room": Position(EPOCH, 3)})
        self.assertEqual(self.delivered, [4])

    def test_gapHoldsLiveMessages(self) -> None:
        """
        A jump is read from the history from the last position; what came
        live meanwhile follows it, once.
        """
        self.following(1)
        self.live(2, 5, 6)
        self.assertEqual(self.delivered, [2])
        self.live(7)
        since = self.store.answer("history", history(3, 4, 5, 6))
        self.assertEqual(since, Position(EPOCH, 2))
        self.assertEqual(self.delivered, [2, 3, 4, 5, 6, 7])
        self.assertEqual(self.gaps.recovered, 2)

    def test_failedRecoveryRetriedByTheCheck(self) -> None:
        """
        A recovery that fails is tried again at the next check, the live
        messages still held; nothing is delivered out of order meanwhile.
        """
        self.following(0)
        self.live(2)
        self.store.fail("history")
        self.flushLoggedErrors()
        self.live(3)
        self.assertEqual(self.delivered, [])
        self.clock.advance(1.0)
        self.store.answer("positions", {"room": Position(EPOCH, 3)})
        self.store.answer("history", history(1, 2, 3))
        self.assertEqual(self.delivered, [1, 2, 3])

    def test_boundedHold(self) -> None:
        """
        Past C{maxHeld} live messages are dropped, and read from the history
        by a second recovery once the first is written.
        """
        self.gaps.maxHeld = 2
        self.following(0)
        self.live(2, 3, 4, 5)
        self.store.answer("history", history(1, 2))
        self.assertEqual(self.delivered, [1, 2, 3])
        since = self.store.answer("history", history(4, 5))
        self.assertEqual((since, self.delivered), (Position(EPOCH, 3), [1, 2, 3, 4, 5]))

    def test_lostLastMessage(self) -> None:
        """
        A top beyond the position at two checks in a row is recovered; at
        one check only it may still be on its way, and is not.
        """
        self.following(0)
        self.live(1)
        self.clock.advance(1.0)
        self.store.answer("positions", {"room": Position(EPOCH, 2)})
        self.assertEqual([r[0] for r in self.store.reads], [])
        self.clock.advance(1.0)
        self.store.answer("positions", {"room": Position(EPOCH, 2)})
        self.store.answer("history", history(2))
        self.assertEqual(self.delivered, [1, 2])

    def test_inFlightNotRecovered(self) -> None:
        """
        A top the live messages reach before the next check costs no read.
        """
        self.following(0)
        self.clock.advance(1.0)
        self.store.answer("positions", {"room": Position(EPOCH, 1)})
        self.live(1)
        self.clock.advance(1.0)
        self.store.answer("positions", {"room": Position(EPOCH, 1)})
        self.assertEqual((self.store.reads, self.delivered), ([], [1]))

    def test_newEpoch(self) -> None:
        """
        A message of another epoch restarts the position at 0 of it.
        """
        self.following(5)
        self.gaps.received("room", 1, "e2", b"x")
        self.gaps.received("room", 2, "e2", b"y")
        self.assertEqual(self.delivered, [1, 2])

    def test_untrackedWhileReading(self) -> None:
        """
        A channel left while its position or history was being read
        delivers nothing when the read comes back.
        """
        self.gaps.track("room")
        self.live(1)
        self.gaps.untrack("room")
        self.store.answer("positions", {"room": Position(EPOCH, 0)})
        self.following(0)
        self.live(3)
        self.gaps.untrack("room")
        self.store.answer("history", history(1, 2, 3))
        self.assertEqual(self.delivered, [])
