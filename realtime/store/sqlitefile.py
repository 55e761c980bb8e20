"""
The SQLite store's operations: the statements each one runs, in the
transaction of its batch (the schema and the connection are
L{realtime.store.sqliteschema}).

Everything here runs in the store's one worker thread, never in the
reactor's; C{realtime.store.sqlite} is the reactor side that hands it work.
"""

from __future__ import annotations

import math
import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass
from typing import IO, Any, Callable, Sequence

from realtime.interfaces import SEEN_RETENTION
from realtime.store.sqliteschema import OpenHook, SchemaError, connect
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage

__all__ = ["Database", "OpenHook", "Operation", "SchemaError", "StoreClosedError"]

Operation = tuple[Callable[..., Any], tuple[Any, ...]]


def _copyName(path: str) -> tuple[str, str, str]:
    """
    Where the backup copies of the database at C{path} are made, and how
    their names begin and end.
    """
    directory, name = os.path.split(os.path.abspath(path))
    return directory, f".{name}.backup-", ".tmp"


class StoreClosedError(RuntimeError):
    """
    The store was asked for work before C{start} or after C{close}.
    """


@dataclass
class _StreamRow:
    """
    A row of C{streams} as the current transaction sees it, with the top
    advanced by the appends of this batch and not yet written back.

    @ivar lastTimestamp: the newest message's timestamp; appends never go
        below it, so that expiry only ever removes a prefix of a stream.
    """

    epoch: str
    top: int
    maxCount: int | None
    ttl: float | None
    lastTimestamp: float
    changed: bool = False

    @property
    def floor(self) -> int:
        """
        The highest offset that C{maxCount} has dropped (0 if none), whether
        or not its row is deleted yet.
        """
        return 0 if self.maxCount is None else max(0, self.top - self.maxCount)


class Database:
    """
    The connection and everything done with it.  Only the pool's thread
    calls these methods, one job at a time.
    """

    def __init__(self) -> None:
        self.connection: sqlite3.Connection | None = None
        self.path = ""
        self._streams: dict[str, _StreamRow] = {}

    def open(self, path: str, openHook: OpenHook | None) -> None:
        """
        Connect and create the schema (see L{connect}), and remove the
        copies a server killed while making a backup left behind: the file
        is this server's alone now, so no other is making one.
        """
        self.connection = connect(path, openHook)
        self.path = path
        directory, prefix, suffix = _copyName(path)
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(suffix):
                os.unlink(os.path.join(directory, name))

    def close(self) -> None:
        """
        Close the connection, if it was opened.
        """
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self.connection is None:
            raise StoreClosedError("the database is not open")
        return self.connection

    def runBatch(self, operations: Sequence[Operation]) -> list[Any]:
        """
        Run C{operations} in order in one transaction and answer their results.

        Stream rows are cached only for the duration of the batch: they are
        written back once at its end, and forgotten whether it commits or
        rolls back, so the cache can never disagree with the file.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            results = [operation(self, *args) for operation, args in operations]
            self._saveStreams()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self._streams.clear()
        return results

    def runAlone(self, operations: Sequence[Operation]) -> list[Any]:
        """
        Run C{operations} (one, in practice) outside any transaction: for
        statements SQLite refuses inside one, like C{VACUUM}.
        """
        return [operation(self, *args) for operation, args in operations]

    def backup(self) -> IO[bytes]:
        """
        C{VACUUM INTO} a new file beside the database, open it, and remove
        its name at once, so that nothing is left behind however its reader
        ends; a failed copy is removed too.

        The copy is made by this connection because no other may read the
        file (exclusive locking); it is a compacted, consistent snapshot in
        rollback-journal mode, a single file ready to be restored.  Beside
        the database, so it needs no other file system and the same
        permissions do.
        """
        directory, prefix, suffix = _copyName(self.path)
        fd, copy = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
        try:
            os.close(fd)
            # the file exists and is empty, as VACUUM INTO requires
            self._db.execute("VACUUM INTO ?", (copy,))
            return open(copy, "rb")
        finally:
            os.unlink(copy)

    def _stream(self, name: str) -> _StreamRow:
        """
        The row of stream C{name}, created with a new epoch if it is new -
        also for a read, so the position a reader is given stays valid once
        messages arrive.
        """
        row = self._streams.get(name)
        if row is not None:
            return row
        db = self._db
        found = db.execute("SELECT epoch, top, maxCount, ttl FROM streams WHERE name = ?", (name,)).fetchone()
        if found is None:
            row = _StreamRow(secrets.token_hex(8), 0, None, None, -math.inf)
            db.execute("INSERT INTO streams (name, epoch, top) VALUES (?, ?, 0)", (name, row.epoch))
        else:
            last = db.execute(
                "SELECT ts FROM messages WHERE stream = ? ORDER BY offset DESC LIMIT 1", (name,)
            ).fetchone()
            epoch, top, maxCount, ttl = found
            row = _StreamRow(epoch, top, maxCount, ttl, lastTimestamp=-math.inf if last is None else last[0])
        self._streams[name] = row
        return row

    def _saveStreams(self) -> None:
        """
        Write back the streams this batch appended to, and delete what their
        C{maxCount} no longer keeps: once per stream per batch, not per append.
        """
        changed = [(name, row) for name, row in self._streams.items() if row.changed]
        if not changed:
            return
        db = self._db
        db.executemany(
            "UPDATE streams SET top = ?, maxCount = ?, ttl = ? WHERE name = ?",
            [(row.top, row.maxCount, row.ttl, name) for name, row in changed],
        )
        db.executemany(
            "DELETE FROM messages WHERE stream = ? AND offset <= ?",
            [(name, row.floor) for name, row in changed if row.floor > 0],
        )
        for _, row in changed:
            row.changed = False

    def append(self, stream: str, payload: bytes, isBinary: bool, retention: Retention, now: float) -> StoredMessage:
        """
        Insert under the next offset; the stream row and the trimming wait
        for the end of the batch (L{_saveStreams}).
        """
        row = self._stream(stream)
        row.top += 1
        row.maxCount, row.ttl = retention.maxCount, retention.ttl
        row.lastTimestamp = max(now, row.lastTimestamp)
        row.changed = True
        self._db.execute(
            "INSERT INTO messages (stream, offset, ts, binary, payload) VALUES (?, ?, ?, ?, ?)",
            (stream, row.top, row.lastTimestamp, int(isBinary), payload),
        )
        return StoredMessage(row.top, payload, isBinary, row.lastTimestamp, row.epoch)

    def history(self, stream: str, since: Position | None, now: float) -> History:
        """
        One range scan of the kept, unexpired messages after C{since}.

        Because kept messages are consecutive offsets (trimming and expiry
        both remove a prefix), C{recovered} follows from the first row: the
        position is served without a gap iff it is not below the trimmed
        floor and the next message is exactly C{since.offset + 1} (or there
        is none because C{since} is the top).
        """
        row = self._stream(stream)
        if since is None:
            return History(row.epoch, row.top, (), True)
        sameEpoch = since.epoch == row.epoch
        if sameEpoch and since.offset > row.top:
            return History(row.epoch, row.top, (), False)
        after = max(since.offset, row.floor) if sameEpoch else row.floor
        ttl = math.inf if row.ttl is None else row.ttl
        rows = self._db.execute(
            "SELECT offset, ts, binary, payload FROM messages"
            " WHERE stream = ? AND offset > ? AND ts + ? > ? ORDER BY offset",
            (stream, after, ttl, now),
        ).fetchall()
        messages = tuple(
            StoredMessage(offset, payload, bool(binary), ts, row.epoch) for offset, ts, binary, payload in rows
        )
        if not sameEpoch or since.offset < row.floor:
            recovered = False
        elif messages:
            recovered = messages[0].offset == since.offset + 1
        else:
            recovered = since.offset == row.top
        return History(row.epoch, row.top, messages, recovered)

    def queueOffline(self, uid: str, payload: bytes, isBinary: bool, limits: OfflineLimits, now: float) -> bool:
        """
        Insert unless C{uid} already has C{limits.maxCount} unexpired pushes.
        """
        db = self._db
        (waiting,) = db.execute("SELECT count(*) FROM offline WHERE uid = ? AND expires > ?", (uid, now)).fetchone()
        if waiting >= limits.maxCount:
            return False
        db.execute(
            "INSERT INTO offline (uid, ts, expires, binary, payload) VALUES (?, ?, ?, ?, ?)",
            (uid, now, now + limits.ttl, int(isBinary), payload),
        )
        return True

    def takeOffline(self, uid: str, now: float) -> list[StoredMessage]:
        """
        Delete all of C{uid}'s rows, answering the unexpired ones in order.
        """
        db = self._db
        rows = db.execute(
            "SELECT seq, ts, binary, payload FROM offline WHERE uid = ? AND expires > ? ORDER BY seq", (uid, now)
        ).fetchall()
        db.execute("DELETE FROM offline WHERE uid = ?", (uid,))
        return [StoredMessage(seq, payload, bool(binary), ts) for seq, ts, binary, payload in rows]

    def markSeen(self, seen: Sequence[tuple[str, float]]) -> None:
        """
        Record each uid's latest connection, in one statement.
        """
        self._db.executemany(
            "INSERT INTO seen (uid, last) VALUES (?, ?) ON CONFLICT (uid) DO UPDATE SET last = max(last, excluded.last)",
            seen,
        )

    def wasSeen(self, uid: str, now: float) -> bool:
        """
        Whether C{uid} connected within L{SEEN_RETENTION}.
        """
        row = self._db.execute("SELECT last FROM seen WHERE uid = ?", (uid,)).fetchone()
        return row is not None and now - row[0] < SEEN_RETENTION

    def offlineUids(self, now: float) -> set[str]:
        """
        The uids with unexpired pushes waiting.
        """
        return {uid for (uid,) in self._db.execute("SELECT DISTINCT uid FROM offline WHERE expires > ?", (now,))}

    def prune(self, now: float) -> int:
        """
        Delete expired rows.  Trimming owed by earlier appends of this batch
        is done first, so it is not counted as expiry.
        """
        self._saveStreams()
        db = self._db
        dropped = db.execute(
            "DELETE FROM messages WHERE ts + (SELECT ttl FROM streams WHERE streams.name = messages.stream) <= ?",
            (now,),
        ).rowcount
        dropped += db.execute("DELETE FROM offline WHERE expires <= ?", (now,)).rowcount
        db.execute("DELETE FROM seen WHERE last <= ?", (now - SEEN_RETENTION,))
        return dropped
