"""
Tests for L{realtime.store.sqlite}: the contract on a real file, a real
reactor and a real thread, plus what only a store on disk promises - history
that survives a restart, SQL that never runs on the reactor thread, and group
commit.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from realtime.store.sqlite import SQLiteMessageStore, StoreClosedError
from realtime.store.sqlitefile import SchemaError
from realtime.values import History, Position, Retention
from tests.store_contract import KEEP, LIMITS, T0, MessageStoreContractMixin, SQLiteTestCase, StatementLog, offsets


class TriggerRecordingReactor:
    """
    The real reactor, except that system event triggers are recorded instead
    of registered, so a test can play the reactor's startup and shutdown.

    @ivar triggers: C{(phase, event, callable)} by trigger id.
    @ivar running: whether C{callWhenRunning} calls at once.
    """

    def __init__(self, running: bool = True) -> None:
        self.triggers: dict[int, tuple[str, str, Callable[[], Any]]] = {}
        self.running = running

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], Any]) -> int:
        triggerId = len(self.triggers) + 1
        self.triggers[triggerId] = (phase, event, f)
        return triggerId

    def removeSystemEventTrigger(self, triggerId: int) -> None:
        del self.triggers[triggerId]

    def callWhenRunning(self, f: Callable[[], Any]) -> int | None:
        if self.running:
            f()
            return None
        return self.addSystemEventTrigger("after", "startup", f)

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def fire(self, phase: str, event: str) -> list[Any]:
        """
        Call (and forget) the triggers of C{phase} C{event}.

        @return: what they returned.
        """
        found = [i for i, (p, e, _) in self.triggers.items() if (p, e) == (phase, event)]
        return [self.triggers.pop(i)[2]() for i in found]


class SQLiteMessageStoreContractTests(MessageStoreContractMixin, SQLiteTestCase):
    """
    The SQLite store keeps the L{IMessageStore} contract.
    """

    def makeStore(self) -> Any:
        return SQLiteMessageStore.open(self.mktemp(), reactor).addCallback(self._closeLater)

    def _closeLater(self, store: SQLiteMessageStore) -> SQLiteMessageStore:
        self.addCleanup(self.assertNoThreads, store)
        self.addCleanup(store.close)
        return store


class RestartTests(SQLiteTestCase):
    """
    History and offline queues survive closing and reopening the file.
    """

    async def test_reopenContinues(self) -> None:
        """
        After a restart the stream has the same epoch, a client's position
        is still recovered, offsets continue, and queued pushes wait.
        """
        path = self.mktemp()
        first = await self.openStore(path)
        appended = [await first.append("news", b"m%d" % i, i == 1, KEEP, T0 + i) for i in range(3)]
        await first.queueOffline("u1", b"offline", True, LIMITS, T0)
        epoch = (await first.history("news", None, T0)).epoch
        await first.close()

        second = await self.openStore(path)
        history = await second.history("news", Position(epoch, 1), T0 + 3)
        self.assertEqual(history, History(epoch, 3, tuple(appended[1:]), True))
        self.assertEqual((await second.append("news", b"m3", False, KEEP, T0 + 3)).offset, 4)
        [queued] = await second.takeOffline("u1", T0 + 1)
        self.assertEqual((queued.payload, queued.isBinary, queued.timestamp), (b"offline", True, T0))

    async def test_reopenKeepsTimestampFloor(self) -> None:
        """
        After a restart a clock that stepped back still cannot stamp a
        message older than the newest one on disk.
        """
        path = self.mktemp()
        first = await self.openStore(path)
        await first.append("news", b"a", False, KEEP, T0)
        await first.close()
        second = await self.openStore(path)
        self.assertEqual((await second.append("news", b"b", False, KEEP, T0 - 60)).timestamp, T0)

    async def test_newFileNewEpoch(self) -> None:
        """
        A deleted database (a new file) means new epochs: old positions are
        not recovered.
        """
        first = await self.openStore()
        await first.append("news", b"a", False, KEEP, T0)
        epoch = (await first.history("news", None, T0)).epoch
        second = await self.openStore()
        await second.append("news", b"a", False, KEEP, T0)
        history = await second.history("news", Position(epoch, 0), T0)
        self.assertNotEqual(history.epoch, epoch)
        self.assertFalse(history.recovered)

    async def test_schemaIdempotent(self) -> None:
        """
        Opening a file again leaves its schema as it was, version recorded
        once.
        """
        path = self.mktemp()
        await (await self.openStore(path)).close()
        await (await self.openStore(path)).close()
        with sqlite3.connect(path) as db:
            self.assertEqual(db.execute("SELECT key, value FROM meta").fetchall(), [("schemaVersion", "1")])
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone(), ("wal",))

    async def test_newerSchemaRefused(self) -> None:
        """
        A file written by a newer store is not touched, and the failed open
        leaves no thread behind.
        """
        path = self.mktemp()
        await (await self.openStore(path)).close()
        # closed, not only committed: the store locks the file exclusively
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'schemaVersion'")
        store = SQLiteMessageStore(path, reactor)
        with self.assertRaises(SchemaError):
            await store.start()
        self.assertNoThreads(store)


class ThreadTests(SQLiteTestCase):
    """
    The reactor thread never runs SQL.
    """

    async def test_noStatementOnReactorThread(self) -> None:
        """
        Every statement of opening, every operation and closing runs in the
        store's thread, none in the reactor's (this one).
        """
        log = StatementLog()
        store = await self.openStore(openHook=log.install)
        epoch = (await store.history("s", None, T0)).epoch
        await gatherResults(
            [
                store.append("s", b"a", False, KEEP, T0),
                store.history("s", Position(epoch, 0), T0),
                store.queueOffline("u", b"o", False, LIMITS, T0),
                store.takeOffline("u", T0),
                store.prune(T0 + 1e6),
            ]
        )
        await store.close()
        reactorThread = threading.get_ident()
        for prefix in ("PRAGMA journal_mode", "CREATE TABLE", "INSERT INTO messages", "SELECT offset", "DELETE FROM offline"):
            self.assertTrue(log.count(prefix), prefix)
        self.assertEqual([sql for ident, sql in log.statements if ident == reactorThread], [])
        self.assertEqual(len({ident for ident, _ in log.statements}), 1)

    async def test_closedStoreRefuses(self) -> None:
        """
        Closing finishes the operations already asked for; later ones fail.
        """
        store = await self.openStore()
        appending = store.append("s", b"a", False, KEEP, T0)
        await store.close()
        self.assertEqual((await appending).offset, 1)
        with self.assertRaises(StoreClosedError):
            await store.append("s", b"b", False, KEEP, T0)


class ShutdownTests(SQLiteTestCase):
    """
    The store stops with the reactor, after finishing its work.
    """

    async def test_opensWhenReactorRuns(self) -> None:
        """
        A constructed store starts its thread only once the reactor runs
        (C{twistd} may fork before that); what is asked meanwhile waits.
        """
        fakeReactor = TriggerRecordingReactor(running=False)
        store = SQLiteMessageStore(self.mktemp(), fakeReactor)
        self.addCleanup(self.assertNoThreads, store)
        self.addCleanup(store.close)
        appending = store.append("s", b"a", False, KEEP, T0)
        self.assertFalse(store._pool.started)
        self.assertNoResult(appending)
        fakeReactor.fire("after", "startup")
        self.assertEqual((await appending).offset, 1)

    async def test_closedBeforeRunning(self) -> None:
        """
        A store closed before the reactor runs never starts a thread, and
        what waited for it fails.
        """
        fakeReactor = TriggerRecordingReactor(running=False)
        store = SQLiteMessageStore(self.mktemp(), fakeReactor)
        appending = store.append("s", b"a", False, KEEP, T0)
        await store.close()
        self.assertEqual((fakeReactor.triggers, store._pool.threads), ({}, []))
        with self.assertRaises(StoreClosedError):
            await appending

    async def test_closesBeforeShutdown(self) -> None:
        """
        The store asks to be closed before the reactor shuts down, and the
        reactor waits for the Deferred: pending appends are committed and the
        thread is stopped.
        """
        fakeReactor = TriggerRecordingReactor()
        path = self.mktemp()
        store = await self.openStore(path, reactor=fakeReactor)
        appending = store.append("s", b"a", False, KEEP, T0)
        [closing] = fakeReactor.fire("before", "shutdown")
        await closing
        self.assertNoThreads(store)
        self.assertEqual((await appending).offset, 1)
        reopened = await self.openStore(path)
        self.assertEqual((await reopened.history("s", None, T0)).offset, 1)

    async def test_closeRemovesTrigger(self) -> None:
        """
        A store closed before shutdown leaves no trigger behind.
        """
        fakeReactor = TriggerRecordingReactor()
        store = await self.openStore(reactor=fakeReactor)
        await store.close()
        self.assertEqual(fakeReactor.triggers, {})


class GroupCommitTests(SQLiteTestCase):
    """
    Operations asked for in one reactor turn share one transaction.
    """

    async def test_oneTransactionPerTurn(self) -> None:
        """
        Fifty appends in one turn are one BEGIN and one COMMIT, and each
        caller gets its own offset, in order.
        """
        log = StatementLog()
        store = await self.openStore(openHook=log.install)
        del log.statements[:]
        results = await gatherResults([store.append("s", b"%d" % i, False, KEEP, T0) for i in range(50)])
        self.assertEqual(offsets(results), list(range(1, 51)))
        self.assertEqual([m.payload for m in results], [b"%d" % i for i in range(50)])
        self.assertEqual((log.count("BEGIN"), log.count("COMMIT"), log.count("INSERT INTO messages")), (1, 1, 50))

    async def test_maxBatch(self) -> None:
        """
        A turn larger than C{maxBatch} is split into several transactions,
        still in order.
        """
        log = StatementLog()
        store = await self.openStore(openHook=log.install, maxBatch=10)
        del log.statements[:]
        results = await gatherResults([store.append("s", b"m", False, KEEP, T0) for _ in range(35)])
        self.assertEqual(offsets(results), list(range(1, 36)))
        self.assertEqual(log.count("COMMIT"), 4)

    async def test_failureFailsItsBatch(self) -> None:
        """
        If a statement of the batch fails, the transaction is rolled back and
        every caller of that batch gets the error; the next batch works, with
        nothing of the failed one kept.
        """
        store = await self.openStore()
        batch = [
            store.append("s", b"a", False, KEEP, T0),
            store.append(object(), b"b", False, KEEP, T0),  # type: ignore[arg-type]
            store.queueOffline("u", b"c", False, LIMITS, T0),
        ]
        for d in batch:
            with self.assertRaises(sqlite3.Error):
                await d
        self.assertEqual((await store.append("s", b"d", False, KEEP, T0)).offset, 1)
        self.assertEqual(await store.takeOffline("u", T0), [])

    async def test_badPayloadFailsAlone(self) -> None:
        """
        A payload that is not bytes is refused to its caller at once, without
        failing the batch of the others.
        """
        store = await self.openStore()
        good = store.append("s", b"a", False, KEEP, T0)
        with self.assertRaises(TypeError):
            await store.append("s", "text", False, KEEP, T0)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            await store.queueOffline("u", "text", False, LIMITS, T0)  # type: ignore[arg-type]
        self.assertEqual((await good).offset, 1)

    async def test_concurrentAppendsAndReads(self) -> None:
        """
        Two hundred appends to one stream in one turn, with a history read
        after every twentieth: offsets are 1..200 without a gap, and each
        read sees exactly the appends asked for before it.
        """
        await self.checkInterleaved(await self.openStore())

    async def test_concurrentAcrossBatches(self) -> None:
        """
        The same, split over many transactions.
        """
        await self.checkInterleaved(await self.openStore(maxBatch=7))

    async def checkInterleaved(self, store: SQLiteMessageStore) -> None:
        """
        Run the interleaved workload of L{test_concurrentAppendsAndReads}.
        """
        epoch = (await store.history("s", None, T0)).epoch
        since = Position(epoch, 0)
        appends, reads = [], []
        for i in range(200):
            appends.append(store.append("s", b"%d" % i, False, Retention(1000, 60.0), T0))
            if i % 20 == 19:
                reads.append(store.history("s", since, T0))
        results = await gatherResults(appends)
        histories = await gatherResults(reads)
        self.assertEqual(offsets(results), list(range(1, 201)))
        for n, history in enumerate(histories, start=1):
            self.assertEqual((history.offset, history.recovered), (20 * n, True))
            self.assertEqual(history.messages, tuple(results[: 20 * n]))
