"""
Tests for L{realtime.core.subscription}: a subscription writes each offset
once, in order, within an epoch - and starts again with a new epoch.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from realtime.core.subscription import Subscription
from realtime.delivery.fanout import Frame
from tests.fakes import FakeSession


def frame(offset: int, epoch: str | None) -> Frame:
    return Frame(f"{epoch}:{offset}".encode(), offset=offset, epoch=epoch)


class SubscriptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = FakeSession("u")
        self.subscription = Subscription(self.session, "news")

    def written(self) -> list[bytes]:
        return [payload for payload, _ in self.session.sent]

    def test_duplicatesDropped(self) -> None:
        """
        An offset already written, or older, is dropped.
        """
        self.subscription.release(2, [frame(3, "e1")], "e1")
        for offset in (3, 2, 4, 4):
            self.subscription.sendPrepared(frame(offset, "e1"))
        self.assertEqual(self.written(), [b"e1:3", b"e1:4"])

    def test_newEpochStartsAgain(self) -> None:
        """
        The channel's history was lost (Redis restarted without its data):
        the new epoch's offsets start at 1 again and are written, not
        dropped as older than the last of the old epoch, and still only once.
        """
        self.subscription.release(5, epoch="e1")
        for offset, epoch in ((6, "e1"), (1, "e2"), (2, "e2"), (2, "e2"), (3, "e2")):
            self.subscription.sendPrepared(frame(offset, epoch))
        self.assertEqual(self.written(), [b"e1:6", b"e2:1", b"e2:2", b"e2:3"])

    def test_epochLearnedFromTheFirstFrame(self) -> None:
        """
        Released without an epoch (a namespace whose position was not read),
        the first frame's epoch is taken as the subscription's, not as a
        new one.
        """
        self.subscription.release(5)
        for offset in (5, 6):
            self.subscription.sendPrepared(frame(offset, "e1"))
        self.assertEqual(self.written(), [b"e1:6"])
