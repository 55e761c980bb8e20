"""
Tests for L{realtime.broker.redisconfirms}: what a pub/sub link knows Redis
confirmed, and lost, without any Redis (the link's tests in tests/redis
drive it through real connections).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.broker.redisconfirms import Confirmations


class ConfirmationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.confirms = Confirmations(self.clock.seconds)

    def confirmAll(self, source: str, *channels: str) -> None:
        for channel in channels:
            self.confirms.confirm(channel, source, wanted=True)

    def test_waitForConfirmation(self) -> None:
        """
        What waits for a channel goes on once Redis confirms it; a channel
        confirmed while nothing wants it is not kept.
        """
        waited = self.confirms.waitFor("a")
        self.assertNoResult(waited)
        self.confirms.confirm("b", "m1", wanted=False)
        self.assertNotIn("b", self.confirms)
        self.assertNoResult(waited)
        self.assertEqual(self.confirms.confirm("a", "m1", wanted=True), (False, False))
        self.successResultOf(waited)
        self.assertIn("a", self.confirms)
        self.successResultOf(self.confirms.waitFor("a"))

    def test_dropTakesItsConnectionsChannels(self) -> None:
        """
        A dropped connection takes away what it confirmed, and only that;
        the link has settled once Redis confirmed each again, and not
        before.
        """
        self.confirmAll("m1", "a", "b")
        self.confirmAll("m2", "c")
        self.clock.advance(5)
        self.confirms.dropped("m1")
        self.assertEqual(self.confirms.lost, {"a": 5.0, "b": 5.0})
        self.assertNotIn("a", self.confirms)
        self.assertIn("c", self.confirms)
        settled = self.confirms.settled()
        self.assertEqual(self.confirms.confirm("a", "m1", wanted=True), (False, False))
        self.assertNoResult(settled)
        self.assertEqual(self.confirms.confirm("b", "m1", wanted=True), (True, False))
        self.successResultOf(settled)
        self.successResultOf(self.confirms.settled())

    def test_confirmedAgainWithoutALoss(self) -> None:
        """
        A channel confirmed again that was not lost is told apart: Redis
        subscribed it again by itself (a reconnect the link did not see).
        """
        self.confirmAll("m1", "a")
        self.assertEqual(self.confirms.confirm("a", "m1", wanted=True), (False, True))

    def test_droppedOnceUntilHeardAgain(self) -> None:
        """
        The failed reads of one outage drop the connection once: what it
        took away stays lost since the first.  Once it confirmed something
        again, a new drop counts.
        """
        self.confirmAll("m1", "a", "b")
        self.confirms.dropped("m1")
        self.clock.advance(3)
        self.confirms.dropped("m1")
        self.assertEqual(self.confirms.lost, {"a": 0.0, "b": 0.0})
        self.confirms.confirm("a", "m1", wanted=True)
        self.confirms.dropped("m1")
        self.assertEqual(self.confirms.lost, {"a": 3.0, "b": 0.0})

    def test_unconfirmedOnEveryConnection(self) -> None:
        """
        A channel no longer confirmed (unwanted, or unsubscribed by Redis)
        is not taken away by a later drop of the connection that confirmed
        it, even once confirmed on another (its slot moved).
        """
        self.confirmAll("m1", "a", "b")
        self.confirmAll("m2", "a")
        self.confirms.unconfirm("a")
        self.confirms.dropped("m1")
        self.confirms.dropped("m2")
        self.assertEqual(set(self.confirms.lost), {"b"})

    def test_releasedWhileLost(self) -> None:
        """
        A lost channel no longer wanted is not waited for: releasing the
        last one settles.
        """
        self.confirmAll("m1", "a")
        self.confirms.dropped("m1")
        waited, settled = self.confirms.waitFor("a"), self.confirms.settled()
        self.assertTrue(self.confirms.release("a"))
        self.successResultOf(waited)
        self.successResultOf(settled)

    def test_missedAmongItsOwn(self) -> None:
        """
        A connection's probe finds missed the channels lost with it before
        the probe came back, and marks them lost since; not those lost with
        another connection still there, and no slot is asked for.
        """
        self.confirmAll("m1", "a", "b")
        self.confirmAll("m2", "c")
        self.confirms.dropped("m1")
        self.confirms.dropped("m2")
        self.clock.advance(1)
        self.confirms.confirm("b", "m1", wanted=True)
        asked: list[str] = []

        def owner(channel: str) -> str:
            asked.append(channel)
            return "m1"

        self.assertEqual(self.confirms.missed("m1", 2.0, {"m1", "m2"}, owner), {"a"})
        self.assertEqual(self.confirms.lost, {"a": 2.0, "c": 0.0})
        self.assertEqual(self.confirms.missed("m1", 2.0, {"m1", "m2"}, owner), set())
        self.assertEqual(asked, [])

    def test_missedFromAMasterGone(self) -> None:
        """
        The channels lost with a connection that is gone since (its master
        failed over) are found by who owns their slot now.
        """
        self.confirmAll("old", "a", "b")
        self.confirms.dropped("old")

        def owner(channel: str) -> str:
            return "new" if channel == "a" else "other"

        self.assertEqual(self.confirms.missed("new", 1.0, {"new", "other"}, owner), {"a"})
        self.assertEqual(self.confirms.missed("other", 1.0, {"new", "other"}, owner), {"b"})
