"""
Tests for L{realtime.core.subscription}: offsets go up within an epoch, and
start over in a new one.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from realtime.core.subscription import Subscription
from realtime.delivery.fanout import Frame
from realtime.testing import FakeSession


def frame(offset: int, epoch: str | None) -> Frame:
    return Frame(b"%d" % offset, False, offset, epoch)


class SubscriptionEpochTests(SynchronousTestCase):
    def test_duplicatesDroppedWithinAnEpoch(self) -> None:
        """
        An offset already written in the same epoch is dropped.
        """
        session = FakeSession("u")
        subscription = Subscription(session, "room")
        subscription.release(2, epoch="e1")
        for f in (frame(2, "e1"), frame(3, "e1"), frame(3, "e1"), frame(4, None)):
            subscription.sendPrepared(f)
        self.assertEqual(session.texts, ["3", "4"])

    def test_newEpochStartsOver(self) -> None:
        """
        A frame of another epoch than the last written starts the offsets
        over: the new history's first messages are written, not taken for
        old ones.
        """
        session = FakeSession("u")
        subscription = Subscription(session, "room")
        subscription.release(0)
        for f in (frame(5, "e1"), frame(6, "e1"), frame(1, "e2"), frame(2, "e2"), frame(2, "e2")):
            subscription.sendPrepared(f)
        self.assertEqual(session.texts, ["5", "6", "1", "2"])
        self.assertEqual((subscription.epoch, subscription.lastOffset), ("e2", 2))
