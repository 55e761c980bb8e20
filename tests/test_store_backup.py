"""
Tests for the SQLite store's backup (L{IBackupSource}) on a real file, a
real reactor and the store's real thread: the copy is a consistent
snapshot in the order of the operations asked for, made in the store's
thread, and leaves nothing in the database's directory.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing
from typing import IO

from twisted.internet.defer import gatherResults
from zope.interface.verify import verifyObject

from realtime.interfaces import IBackupSource
from realtime.store.health import MonitoredStore, StoreUnavailable
from realtime.store.memory import MemoryMessageStore
from realtime.store.sqlite import StoreClosedError
from realtime.values import Position
from tests.store_contract import KEEP, LIMITS, T0, SQLiteTestCase, StatementLog


def refuseAttach(connection: sqlite3.Connection) -> None:
    """
    An C{openHook} under which C{VACUUM INTO} fails once its target file
    exists: SQLite attaches the target, and this refuses every attach.
    """

    def authorize(action: int, *args: object) -> int:
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_ATTACH else sqlite3.SQLITE_OK

    connection.set_authorizer(authorize)


class BackupTests(SQLiteTestCase):
    """
    L{SQLiteMessageStore.backup}.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "realtime.sqlite3")

    def saved(self, copy: IO[bytes]) -> sqlite3.Connection:
        """
        Save C{copy} as the operator would, and open it.
        """
        path = os.path.join(self.mktemp() + ".sqlite3")
        with copy, open(path, "wb") as f:
            f.write(copy.read())
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        return connection

    async def test_snapshot(self) -> None:
        """
        The copy holds what was asked for before it (history, offline
        queues, uids seen) and nothing asked for after it, even in the same
        reactor turn; the store goes on serving.
        """
        store = await self.openStore(self.path)
        for i in range(3):
            await store.append("news", b"m%d" % i, False, KEEP, T0 + i)
        await store.markSeen({"away": T0})
        await store.queueOffline("away", b"waiting", True, LIMITS, T0)
        before, copy, after = await gatherResults(
            [store.append("news", b"before", False, KEEP, T0), store.backup(), store.append("news", b"after", False, KEEP, T0)]
        )
        db = self.saved(copy)
        self.assertEqual(
            db.execute("SELECT offset, payload FROM messages ORDER BY offset").fetchall(),
            [(1, b"m0"), (2, b"m1"), (3, b"m2"), (4, b"before")],
        )
        self.assertEqual(db.execute("SELECT uid, binary, payload FROM offline").fetchall(), [("away", 1, b"waiting")])
        self.assertEqual(db.execute("SELECT uid FROM seen").fetchall(), [("away",)])
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone(), ("ok",))
        history = await store.history("news", Position(before.epoch, 4), T0)
        self.assertEqual([m.payload for m in history.messages], [b"after"])
        self.assertEqual(after.offset, 5)

    async def test_restoreContinues(self) -> None:
        """
        A store opened on the copy continues its epochs and offsets, so
        clients resume across a restore.
        """
        store = await self.openStore(self.path)
        stored = await store.append("news", b"a", False, KEEP, T0)
        copy = await store.backup()
        await store.close()
        restored = os.path.join(self.directory, "restored.sqlite3")
        with copy, open(restored, "wb") as f:
            f.write(copy.read())
        again = await self.openStore(restored)
        history = await again.history("news", Position(stored.epoch, 0), T0)
        self.assertEqual((history.recovered, [m.payload for m in history.messages]), (True, [b"a"]))
        self.assertEqual((await again.append("news", b"b", False, KEEP, T0)).offset, 2)

    async def test_nothingLeftBehind(self) -> None:
        """
        The copy's name is gone from the directory before it is handed
        over: however its reader ends, nothing is left to clean up.
        """
        store = await self.openStore(self.path)
        await store.append("news", b"a", False, KEEP, T0)
        files = sorted(os.listdir(self.directory))
        copy = await store.backup()
        with copy:
            self.assertEqual(os.fstat(copy.fileno()).st_nlink, 0)
            self.assertEqual(sorted(os.listdir(self.directory)), files)
            self.assertEqual(copy.read(16), b"SQLite format 3\x00")

    async def test_failedCopyRemoved(self) -> None:
        """
        A copy that fails half-way (here SQLite refuses to attach its
        target) is removed, and the store keeps working.
        """
        store = await self.openStore(self.path, openHook=refuseAttach)
        files = sorted(os.listdir(self.directory))
        with self.assertRaises(sqlite3.DatabaseError):
            await store.backup()
        self.assertEqual(sorted(os.listdir(self.directory)), files)
        self.assertEqual((await store.append("news", b"a", False, KEEP, T0)).offset, 1)

    async def test_leftoverRemoved(self) -> None:
        """
        A copy left by a server killed while making it is removed when the
        store opens; other files are kept.
        """
        leftover = os.path.join(self.directory, ".realtime.sqlite3.backup-k1ll3d.tmp")
        others = [os.path.join(self.directory, name) for name in (".other.sqlite3.backup-x.tmp", "notes.tmp")]
        for path in [leftover, *others]:
            open(path, "wb").close()
        await self.openStore(self.path)
        self.assertFalse(os.path.exists(leftover))
        self.assertTrue(all(os.path.exists(path) for path in others))

    async def test_inStoreThread(self) -> None:
        """
        The copy is made by the store's thread, never the reactor's.
        """
        log = StatementLog()
        store = await self.openStore(self.path, openHook=log.install)
        (await store.backup()).close()
        [(ident, _)] = [(i, sql) for i, sql in log.statements if sql.startswith("VACUUM INTO")]
        self.assertNotEqual(ident, threading.get_ident())
        self.assertEqual(len({i for i, _ in log.statements}), 1)

    async def test_closedStoreRefuses(self) -> None:
        """
        A closed store makes no copy.
        """
        store = await self.openStore(self.path)
        await store.close()
        with self.assertRaises(StoreClosedError):
            await store.backup()

    async def test_outsideReaderRefused(self) -> None:
        """
        Why the server makes the copy: while it runs, another connection to
        the file (another process's ``sqlite3 .backup``) is refused.
        """
        store = await self.openStore(self.path)
        await store.append("news", b"a", False, KEEP, T0)
        with closing(sqlite3.connect(self.path, timeout=0)) as other:
            with self.assertRaisesRegex(sqlite3.OperationalError, "locked"):
                other.execute("SELECT count(*) FROM messages").fetchone()

    async def test_interfaces(self) -> None:
        """
        The SQLite store, and a watched one, are backup sources; a watched
        memory store is not; a watched store's failed copy is a
        L{StoreUnavailable} with the reason.
        """
        store = await self.openStore(self.path, openHook=refuseAttach)
        self.assertTrue(verifyObject(IBackupSource, store))
        monitored = MonitoredStore(store)
        self.assertTrue(verifyObject(IBackupSource, monitored))
        self.assertFalse(IBackupSource.providedBy(MonitoredStore(MemoryMessageStore())))
        with self.assertRaisesRegex(StoreUnavailable, "authorization denied"):
            await monitored.backup()
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.DatabaseError)), 1)
