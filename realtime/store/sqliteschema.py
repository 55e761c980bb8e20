"""
The SQLite store's schema, and opening a connection to a file that holds it.

Apart from L{realtime.store.sqlitefile} (the statements each operation runs)
so that what a file I{is} - its tables, its version, its pragmas and why -
reads in one place, which a migration will change, while the operations
change with the store's features.  Runs in the store's worker thread, like
everything that touches the connection.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

SCHEMA_VERSION = 1

OpenHook = Callable[[sqlite3.Connection], None]

BUSY_TIMEOUT_MS = 5000

_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # maxCount and ttl are the retention of the latest append (NULL for a
    # stream only ever read), so pruning needs no caller to say it again.
    """
    CREATE TABLE IF NOT EXISTS streams (
        name TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        top INTEGER NOT NULL,
        maxCount INTEGER,
        ttl REAL
    )
    """,
    # Clustered on (stream, offset): a history read is one range scan.
    """
    CREATE TABLE IF NOT EXISTS messages (
        stream TEXT NOT NULL,
        offset INTEGER NOT NULL,
        ts REAL NOT NULL,
        binary INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (stream, offset)
    ) WITHOUT ROWID
    """,
    # AUTOINCREMENT: a seq is never reused, even after the newest row of the
    # table is taken, so offsets of offline pushes only ever grow.
    """
    CREATE TABLE IF NOT EXISTS offline (
        uid TEXT NOT NULL,
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        expires REAL NOT NULL,
        binary INTEGER NOT NULL,
        payload BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS offline_uid ON offline (uid, seq)",
    # uids that connected lately: only they get an offline queue
    """
    CREATE TABLE IF NOT EXISTS seen (
        uid TEXT PRIMARY KEY,
        last REAL NOT NULL
    ) WITHOUT ROWID
    """,
)


class SchemaError(Exception):
    """
    The file was written by a newer version of the store, which this one must
    not modify.
    """


def connect(path: str, openHook: OpenHook | None = None) -> sqlite3.Connection:
    """
    Open C{path}, tune it and make sure it holds our schema.

    The connection is in autocommit mode (C{isolation_level=None}): the store
    issues C{BEGIN IMMEDIATE}/C{COMMIT} itself, so that one batch of work is
    exactly one transaction, and C{IMMEDIATE} takes the write lock up front
    rather than failing half-way if another process holds it.

    @param openHook: called with the new connection before any statement,
        like C{adbapi}'s C{cp_openfun} (tests install a trace callback here).
    @raise SchemaError: if the file's schema is newer than ours.
    """
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        if openHook is not None:
            openHook(connection)
        # A write fault must be an error, never a signal.  SQLite maps the
        # WAL index (the -shm file) into memory, and a store to a mapped
        # page the file system cannot back (the file made immutable, a full
        # disk) kills the process with SIGBUS.  With the exclusive locking
        # mode, chosen before WAL, the index lives in heap memory and no
        # -shm exists; the price is that no other process may open the file
        # while the server runs, which its one writer thread assumes anyway.
        # mmap_size=0 keeps the database file itself unmapped, whatever the
        # build's default.
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("PRAGMA mmap_size=0")
        # WAL: readers never block the writer, and a commit is one append to
        # the log; with synchronous=NORMAL it is not fsynced, which loses at
        # most the last transactions on power loss, never the file.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        createSchema(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def createSchema(connection: sqlite3.Connection) -> None:
    """
    Create the tables if they are missing and record the schema version, in
    one transaction; running it again on a current file changes nothing.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _TABLES:
            connection.execute(statement)
        row = connection.execute("SELECT value FROM meta WHERE key = 'schemaVersion'").fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schemaVersion', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise SchemaError(f"schema version {row[0]} is newer than {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
