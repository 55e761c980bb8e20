"""
Tests for L{realtime.broker.memory.MemoryBroker.deliverToUid}, the path of
every uid push another node sends through Redis.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.broker.memory import MemoryBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.testing import FakeSession


class DeliverToUidTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = SessionRegistry()
        self.broker = MemoryBroker(self.registry, Fanout(self.clock, chunkSize=3))

    def sessions(self, uid: str, n: int) -> list[FakeSession]:
        made = [FakeSession(uid) for _ in range(n)]
        for session in made:
            self.registry.add(session)
        return made

    def test_writtenAtOnce(self) -> None:
        """
        A uid whose sessions fit in one chunk is written to at once, and the
        answer is how many sessions got it.
        """
        mine, other = self.sessions("u1", 2), self.sessions("u2", 1)
        self.assertEqual(self.broker.deliverToUid("u1", b"hi", True), 2)
        self.assertEqual([s.sent for s in mine], [[(b"hi", True)]] * 2)
        self.assertEqual(other[0].sent, [])

    def test_unknownUid(self) -> None:
        """
        A uid without a session here is written to nowhere: 0.
        """
        self.assertEqual(self.broker.deliverToUid("nobody", b"hi"), 0)

    def test_chunked(self) -> None:
        """
        A uid with more sessions than a chunk takes is written over several
        turns; the Deferred fires with the count once the last is written.
        """
        mine = self.sessions("u1", 5)
        answer = self.broker.deliverToUid("u1", b"hi")
        assert isinstance(answer, Deferred)
        self.assertNoResult(answer)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(answer), 5)
        self.assertEqual([s.sent for s in mine], [[(b"hi", False)]] * 5)
