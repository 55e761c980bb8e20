"""
Tests for L{realtime.core.registry}.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from realtime.core.registry import SessionRegistry
from realtime.core.subscription import Subscription
from realtime.interfaces import ISessionRegistry
from tests.fakes import FakeSession


class SessionRegistryTests(SynchronousTestCase):
    """
    Sessions are found by id and by uid, and leave every index at once.
    """

    def test_interface(self) -> None:
        """
        L{SessionRegistry} provides L{ISessionRegistry}.
        """
        self.assertTrue(verifyObject(ISessionRegistry, SessionRegistry()))

    def test_manySessionsPerUid(self) -> None:
        """
        One uid may hold several sessions (tabs, phone and PC), in join order.
        """
        registry = SessionRegistry()
        a, b, c = FakeSession("u1", "a"), FakeSession("u1", "b"), FakeSession("u2", "c")
        for s in (a, b, c):
            registry.add(s)
        self.assertEqual(registry.sessionsOf("u1"), (a, b))
        self.assertEqual(registry.sessionsOf("u2"), (c,))
        self.assertEqual(registry.sessionsOf("nobody"), ())
        self.assertTrue(registry.hasSessions("u1"))
        self.assertFalse(registry.hasSessions("nobody"))
        self.assertEqual(len(registry), 3)
        self.assertEqual(registry.uidCount(), 2)
        self.assertIs(registry.get("b"), b)
        self.assertEqual(set(registry.allSessions()), {a, b, c})
        self.assertEqual(set(registry.uids()), {"u1", "u2"})

    def test_discardLeavesEveryIndex(self) -> None:
        """
        A discarded session is gone by id and by uid; the uid disappears with
        its last session.
        """
        registry = SessionRegistry()
        a, b = FakeSession("u1", "a"), FakeSession("u1", "b")
        registry.add(a)
        registry.add(b)
        registry.discard(a)
        self.assertIsNone(registry.get("a"))
        self.assertEqual(registry.sessionsOf("u1"), (b,))
        registry.discard(b)
        self.assertEqual(registry.sessionsOf("u1"), ())
        self.assertEqual(registry.uidCount(), 0)
        self.assertEqual(len(registry), 0)

    def test_addTwiceDiscardUnknown(self) -> None:
        """
        Adding a session twice indexes it once; discarding one never added,
        or twice, changes nothing.
        """
        registry = SessionRegistry()
        a = FakeSession("u1", "a")
        registry.add(a)
        registry.add(a)
        self.assertEqual(registry.sessionsOf("u1"), (a,))
        registry.discard(FakeSession("u1", "a"))
        self.assertIs(registry.get("a"), a)
        registry.discard(a)
        registry.discard(a)
        self.assertEqual(len(registry), 0)

    def test_snapshots(self) -> None:
        """
        The collections handed out are snapshots: sessions may leave while a
        caller iterates them.
        """
        registry = SessionRegistry()
        sessions = [FakeSession("u", str(i)) for i in range(5)]
        for s in sessions:
            registry.add(s)
        for s in registry.allSessions():
            registry.discard(s)
        self.assertEqual(len(registry), 0)

    def test_snapshotShared(self) -> None:
        """
        C{allSessions} hands out the same snapshot until sessions change.
        """
        registry = SessionRegistry()
        a, b = FakeSession("u", "a"), FakeSession("v", "b")
        registry.add(a)
        first = registry.allSessions()
        self.assertIs(registry.allSessions(), first)
        registry.add(b)
        second = registry.allSessions()
        self.assertIsNot(second, first)
        self.assertEqual(second, (a, b))
        registry.discard(a)
        self.assertEqual(registry.allSessions(), (b,))

    def test_channelSnapshotShared(self) -> None:
        """
        C{subscribersOf} hands out the same snapshot until the channel's
        subscriptions change, so the fan-out can sweep messages published
        one after another to a big channel together.
        """
        registry = SessionRegistry()
        a, b = (Subscription(FakeSession(uid, uid), "room") for uid in ("u", "v"))
        other = Subscription(FakeSession("w", "w"), "hall")
        registry.subscribe(a)
        first = registry.subscribersOf("room")
        self.assertIs(registry.subscribersOf("room"), first)
        registry.subscribe(other)
        self.assertIs(registry.subscribersOf("room"), first)
        registry.subscribe(b)
        second = registry.subscribersOf("room")
        self.assertIsNot(second, first)
        self.assertEqual(second, (a, b))
        registry.unsubscribe(a)
        self.assertEqual(registry.subscribersOf("room"), (b,))
        registry.unsubscribe(b)
        self.assertEqual(registry.subscribersOf("room"), ())
        registry.subscribe(a)
        self.assertEqual(registry.subscribersOf("room"), (a,))
