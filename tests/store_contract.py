"""
What every L{IMessageStore} must do, written once and run against each store
(C{tests/test_store_memory.py}, C{tests/test_store_sqlite.py}), and the
helpers the SQLite store's tests share (L{SQLiteTestCase}, L{StatementLog}).

Time is whatever C{now} the test passes, as the interface asks, so expiry is
tested without sleeping.  Tests are C{async def} so they read the same whether
a store answers at once (memory) or from a thread (SQLite).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from realtime.interfaces import SEEN_RETENTION, IMessageStore
from realtime.store.sqlite import SQLiteMessageStore
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage

if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase

    _Base = TestCase
else:
    _Base = object

T0 = 1_700_000_000.0
KEEP = Retention(maxCount=100, ttl=3600.0)
LIMITS = OfflineLimits(maxCount=10, ttl=60.0)


def offsets(messages: Any) -> list[int]:
    """
    The offsets of C{messages}, to compare against a list.
    """
    return [m.offset for m in messages]


class MessageStoreContractMixin(_Base):
    """
    Mix into a C{twisted.trial.unittest.TestCase} and define L{makeStore}.
    """

    def makeStore(self) -> Any:
        """
        Build a fresh, empty store, arranging for it to be closed at cleanup.

        @return: an L{IMessageStore}, or a Deferred firing with one.
        """
        raise NotImplementedError

    async def openStore(self) -> Any:
        """
        L{makeStore}, waited for.
        """
        store = await maybeDeferred(self.makeStore)
        return store

    async def appendAll(self, store: Any, stream: str, count: int, retention: Retention = KEEP, now: float = T0) -> list[StoredMessage]:
        """
        Append C{b"0"}, C{b"1"}, ... one after the other.
        """
        return [await store.append(stream, str(i).encode(), False, retention, now) for i in range(count)]

    async def epochOf(self, store: Any, stream: str) -> str:
        """
        C{stream}'s current epoch.
        """
        history: History = await store.history(stream, None, T0)
        return history.epoch

    async def test_interface(self) -> None:
        """
        The store provides L{IMessageStore}.
        """
        store = await self.openStore()
        self.assertTrue(verifyObject(IMessageStore, store))

    async def test_offsetsInOrder(self) -> None:
        """
        Offsets start at 1 and grow by one; the message comes back as given,
        stamped with C{now} and the stream's epoch.
        """
        store = await self.openStore()
        first = await store.append("news", b"a", False, KEEP, T0)
        second = await store.append("news", b"\x00\xff", True, KEEP, T0 + 1)
        third = await store.append("news", b"c", False, KEEP, T0 + 2)
        epoch = await self.epochOf(store, "news")
        self.assertEqual(
            [first, second, third],
            [
                StoredMessage(1, b"a", False, T0, epoch),
                StoredMessage(2, b"\x00\xff", True, T0 + 1, epoch),
                StoredMessage(3, b"c", False, T0 + 2, epoch),
            ],
        )

    async def test_streamsAreIndependent(self) -> None:
        """
        Each stream has its own offsets and its own epoch.
        """
        store = await self.openStore()
        await self.appendAll(store, "a", 3)
        other = await store.append("b", b"x", False, KEEP, T0)
        self.assertEqual(other.offset, 1)
        self.assertNotEqual(await self.epochOf(store, "a"), await self.epochOf(store, "b"))

    async def test_historyAfterPosition(self) -> None:
        """
        A position in the current epoch gets exactly the later messages, in
        order, with the stream's epoch and top.
        """
        store = await self.openStore()
        appended = await self.appendAll(store, "news", 5)
        epoch = await self.epochOf(store, "news")
        history = await store.history("news", Position(epoch, 2), T0)
        self.assertEqual(history, History(epoch, 5, tuple(appended[2:]), True))
        fromStart = await store.history("news", Position(epoch, 0), T0)
        self.assertEqual(fromStart, History(epoch, 5, tuple(appended), True))

    async def test_historyWithoutPosition(self) -> None:
        """
        No position means no messages, only where the stream is now.
        """
        store = await self.openStore()
        await self.appendAll(store, "news", 2)
        history = await store.history("news", None, T0)
        self.assertEqual((history.offset, history.messages, history.recovered), (2, (), True))
        self.assertTrue(history.epoch)

    async def test_epochFixedAtFirstUse(self) -> None:
        """
        A stream read before it has messages is at offset 0 of an epoch that
        the first append keeps, so the reader's position stays valid.
        """
        store = await self.openStore()
        empty = await store.history("fresh", None, T0)
        self.assertEqual((empty.offset, empty.messages), (0, ()))
        appended = await store.append("fresh", b"m", False, KEEP, T0)
        history = await store.history("fresh", Position(empty.epoch, 0), T0)
        self.assertEqual(history, History(empty.epoch, 1, (appended,), True))

    async def test_otherEpoch(self) -> None:
        """
        A position of another epoch is not recovered; every kept message is
        given, since all of them came after the history it knew.
        """
        store = await self.openStore()
        appended = await self.appendAll(store, "news", 3)
        history = await store.history("news", Position("not-this-one", 1), T0)
        self.assertFalse(history.recovered)
        self.assertEqual(history.messages, tuple(appended))

    async def test_positionAtTop(self) -> None:
        """
        A client that has everything is recovered with nothing to catch up.
        """
        store = await self.openStore()
        await self.appendAll(store, "news", 3)
        epoch = await self.epochOf(store, "news")
        history = await store.history("news", Position(epoch, 3), T0)
        self.assertEqual(history, History(epoch, 3, (), True))

    async def test_positionBeyondTop(self) -> None:
        """
        A position past the top cannot have come from this epoch.
        """
        store = await self.openStore()
        await self.appendAll(store, "news", 3)
        epoch = await self.epochOf(store, "news")
        history = await store.history("news", Position(epoch, 4), T0)
        self.assertEqual(history, History(epoch, 3, (), False))

    async def test_trimmedByMaxCount(self) -> None:
        """
        Only the newest C{maxCount} messages are kept; a position older than
        the oldest kept one is told of the gap, one just before it is not.
        """
        store = await self.openStore()
        appended = await self.appendAll(store, "news", 5, Retention(maxCount=3, ttl=3600.0))
        epoch = await self.epochOf(store, "news")
        lost = await store.history("news", Position(epoch, 1), T0)
        self.assertEqual(lost, History(epoch, 5, tuple(appended[2:]), False))
        edge = await store.history("news", Position(epoch, 2), T0)
        self.assertEqual(edge, History(epoch, 5, tuple(appended[2:]), True))

    async def test_expiredByTtl(self) -> None:
        """
        A message is not served once C{ttl} seconds have passed; a position
        before it now has a gap, a position after it does not.
        """
        store = await self.openStore()
        retention = Retention(maxCount=100, ttl=10.0)
        for t in (T0, T0 + 5, T0 + 8):
            await store.append("news", b"m", False, retention, t)
        epoch = await self.epochOf(store, "news")
        history = await store.history("news", Position(epoch, 0), T0 + 10)
        self.assertEqual((offsets(history.messages), history.recovered), ([2, 3], False))
        history = await store.history("news", Position(epoch, 1), T0 + 10)
        self.assertEqual((offsets(history.messages), history.recovered), ([2, 3], True))
        history = await store.history("news", Position(epoch, 2), T0 + 20)
        self.assertEqual((offsets(history.messages), history.recovered, history.offset), ([], False, 3))
        history = await store.history("news", Position(epoch, 3), T0 + 20)
        self.assertEqual((offsets(history.messages), history.recovered), ([], True))

    async def test_timestampsNeverDecrease(self) -> None:
        """
        If the clock steps back, a message keeps its predecessor's timestamp,
        so expiry still removes only the oldest messages.
        """
        store = await self.openStore()
        await store.append("news", b"a", False, KEEP, T0)
        second = await store.append("news", b"b", False, KEEP, T0 - 30)
        self.assertEqual(second.timestamp, T0)

    async def test_offlineFifo(self) -> None:
        """
        Queued pushes are taken oldest first, as they were given, with
        growing offsets.
        """
        store = await self.openStore()
        for i, binary in enumerate([False, True, False]):
            self.assertIs(await store.queueOffline("u1", b"p%d" % i, binary, LIMITS, T0 + i), True)
        taken = await store.takeOffline("u1", T0 + 3)
        self.assertEqual(
            [(m.payload, m.isBinary, m.timestamp, m.epoch) for m in taken],
            [(b"p0", False, T0, ""), (b"p1", True, T0 + 1, ""), (b"p2", False, T0 + 2, "")],
        )
        self.assertEqual(offsets(taken), sorted(set(offsets(taken))))

    async def test_offlineTakeRemoves(self) -> None:
        """
        Taking empties the queue: a second take gets nothing, and other uids'
        queues are untouched.
        """
        store = await self.openStore()
        await store.queueOffline("u1", b"a", False, LIMITS, T0)
        await store.queueOffline("u2", b"b", False, LIMITS, T0)
        self.assertEqual(len(await store.takeOffline("u1", T0)), 1)
        self.assertEqual(await store.takeOffline("u1", T0), [])
        self.assertEqual([m.payload for m in await store.takeOffline("u2", T0)], [b"b"])

    async def test_offlineLimit(self) -> None:
        """
        A full queue refuses with C{False}; once taken, it accepts again.
        """
        store = await self.openStore()
        limits = OfflineLimits(maxCount=2, ttl=60.0)
        answers = [await store.queueOffline("u1", b"m", False, limits, T0) for _ in range(3)]
        self.assertEqual(answers, [True, True, False])
        self.assertEqual(len(await store.takeOffline("u1", T0)), 2)
        self.assertIs(await store.queueOffline("u1", b"m", False, limits, T0), True)

    async def test_offlineExpiry(self) -> None:
        """
        Expired pushes are not taken, and no longer count towards the limit.
        """
        store = await self.openStore()
        limits = OfflineLimits(maxCount=2, ttl=10.0)
        await store.queueOffline("u1", b"old", False, limits, T0)
        await store.queueOffline("u1", b"new", False, limits, T0 + 5)
        self.assertIs(await store.queueOffline("u1", b"newest", False, limits, T0 + 10), True)
        taken = await store.takeOffline("u1", T0 + 10)
        self.assertEqual([m.payload for m in taken], [b"new", b"newest"])

    async def test_seen(self) -> None:
        """
        A uid is known from its connection for L{SEEN_RETENTION}; pruning
        forgets it after that.
        """
        store = await self.openStore()
        self.assertIs(await store.wasSeen("u1", T0), False)
        await store.markSeen({"u1": T0})
        self.assertIs(await store.wasSeen("u1", T0 + SEEN_RETENTION - 1), True)
        self.assertIs(await store.wasSeen("u1", T0 + SEEN_RETENTION), False)
        await store.markSeen({"u1": T0 + 100, "u2": T0})
        await store.markSeen({"u1": T0})
        self.assertIs(await store.wasSeen("u2", T0), True)
        self.assertIs(await store.wasSeen("u1", T0 + SEEN_RETENTION + 50), True)
        await store.prune(T0 + SEEN_RETENTION + 100)
        self.assertIs(await store.wasSeen("u1", T0), False)

    async def test_offlineUids(self) -> None:
        """
        The uids with unexpired pushes waiting.
        """
        store = await self.openStore()
        await store.queueOffline("u1", b"a", False, OfflineLimits(5, 10.0), T0)
        await store.queueOffline("u2", b"b", False, OfflineLimits(5, 30.0), T0)
        self.assertEqual(await store.offlineUids(T0), {"u1", "u2"})
        self.assertEqual(await store.offlineUids(T0 + 20), {"u2"})
        await store.takeOffline("u2", T0)
        self.assertEqual(await store.offlineUids(T0), {"u1"})

    async def test_prune(self) -> None:
        """
        Pruning drops expired history and offline pushes and says how many;
        what is unexpired stays, and the stream keeps its epoch and offsets.
        """
        store = await self.openStore()
        retention = Retention(maxCount=100, ttl=10.0)
        await self.appendAll(store, "news", 3, retention, T0)
        await store.append("news", b"late", False, retention, T0 + 5)
        await store.queueOffline("u1", b"a", False, OfflineLimits(5, 10.0), T0)
        await store.queueOffline("u2", b"b", False, OfflineLimits(5, 30.0), T0)
        epoch = await self.epochOf(store, "news")
        self.assertEqual(await store.prune(T0 + 12), 4)
        self.assertEqual(await store.prune(T0 + 12), 0)
        history = await store.history("news", Position(epoch, 3), T0 + 12)
        self.assertEqual((history.epoch, history.offset, offsets(history.messages), history.recovered), (epoch, 4, [4], True))
        self.assertEqual((await store.append("news", b"next", False, retention, T0 + 12)).offset, 5)
        self.assertEqual([m.payload for m in await store.takeOffline("u2", T0 + 12)], [b"b"])

    async def test_close(self) -> None:
        """
        Closing answers a Deferred that fires.
        """
        store = await self.openStore()
        closing = store.close()
        self.assertIsInstance(closing, Deferred)
        await closing


class StatementLog:
    """
    Records, through C{set_trace_callback}, every SQL statement a connection
    runs and the thread that ran it.

    @ivar statements: C{(threadIdent, sql)} in execution order.
    """

    def __init__(self) -> None:
        self.statements: list[tuple[int, str]] = []

    def install(self, connection: sqlite3.Connection) -> None:
        """
        An C{openHook}: trace C{connection}.
        """
        connection.set_trace_callback(lambda sql: self.statements.append((threading.get_ident(), sql)))

    def count(self, prefix: str) -> int:
        """
        How many statements start with C{prefix}.
        """
        return sum(1 for _, sql in self.statements if sql.lstrip().startswith(prefix))


class SQLiteTestCase(TestCase):
    """
    Opens stores on files under C{mktemp()} and closes them at cleanup,
    checking that no store thread outlives its test.
    """

    async def openStore(self, path: str | None = None, reactor: Any = reactor, **kwargs: Any) -> SQLiteMessageStore:
        """
        Open the store at C{path} (a new file by default).
        """
        store = await SQLiteMessageStore.open(path or self.mktemp(), reactor, **kwargs)
        self.addCleanup(self.assertNoThreads, store)
        self.addCleanup(store.close)
        return store

    def assertNoThreads(self, store: SQLiteMessageStore) -> None:
        """
        C{store}'s pool is stopped and its thread has exited.
        """
        self.assertFalse(store._pool.started)
        self.assertEqual([t for t in store._pool.threads if t.is_alive()], [])
