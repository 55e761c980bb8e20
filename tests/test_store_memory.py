"""
Tests for L{realtime.store.memory}.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from realtime.store.memory import MemoryMessageStore
from realtime.values import OfflineLimits, Position, Retention
from tests.store_contract import KEEP, T0, MessageStoreContractMixin


class MemoryMessageStoreContractTests(MessageStoreContractMixin, TestCase):
    """
    The memory store keeps the L{IMessageStore} contract.
    """

    def makeStore(self) -> MemoryMessageStore:
        return MemoryMessageStore()


class MemoryMessageStoreTests(TestCase):
    """
    What only the memory store promises.
    """

    def test_answersAtOnce(self) -> None:
        """
        Every method answers an already-fired Deferred, so callers never wait
        a reactor turn for it.
        """
        store = MemoryMessageStore()
        message = self.successResultOf(store.append("s", b"m", False, KEEP, T0))
        history = self.successResultOf(store.history("s", None, T0))
        self.assertEqual((message.offset, history.offset), (1, 1))
        self.assertIs(self.successResultOf(store.queueOffline("u", b"m", False, OfflineLimits(1, 5.0), T0)), True)
        self.assertEqual(len(self.successResultOf(store.takeOffline("u", T0))), 1)
        self.assertEqual(self.successResultOf(store.prune(T0)), 0)
        self.assertIsNone(self.successResultOf(store.close()))

    def test_restartLosesHistory(self) -> None:
        """
        A new store (a restarted server) has a new epoch, so a client resuming
        from the old one learns it lost messages.
        """
        before = MemoryMessageStore()
        self.successResultOf(before.append("s", b"m", False, KEEP, T0))
        epoch = self.successResultOf(before.history("s", None, T0)).epoch
        after = MemoryMessageStore()
        history = self.successResultOf(after.history("s", Position(epoch, 1), T0))
        self.assertNotEqual(history.epoch, epoch)
        self.assertFalse(history.recovered)

    def test_trimKeepsMemoryBounded(self) -> None:
        """
        A stream never holds more than C{maxCount} messages, however many are
        appended.
        """
        store = MemoryMessageStore()
        for _ in range(1000):
            store.append("s", b"m", False, Retention(maxCount=10, ttl=60.0), T0)
        self.assertEqual(len(store._streams["s"].messages), 10)
