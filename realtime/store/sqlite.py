"""
The message store in an SQLite file, so history and offline queues survive a
restart of the server.

SQLite calls block, and the reactor must never block, so every statement runs
in a thread pool of exactly one thread that owns the connection.  One thread
means jobs run in the order they were submitted (a read sees every earlier
append) and there is never a second writer to wait for.

The cost of a write is the commit, so the store commits in groups: the
operations asked for in one reactor turn - and any asked for while the thread
is busy with the previous group - become one job and one transaction.  Under
load groups grow by themselves, so there are fewer commits exactly when it
matters; an idle store commits a lone append within one reactor turn.
"""

from __future__ import annotations

from typing import IO, Any, Callable, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from realtime.interfaces import IBackupSource, IMessageStore
from realtime.store.sqlitefile import Database, OpenHook, StoreClosedError
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage

__all__ = ["SQLiteMessageStore", "StoreClosedError"]

_Pending = tuple[Callable[..., Any], tuple[Any, ...], "Deferred[Any]"]

#: operations SQLite refuses inside a transaction: each is a job of its own
_ALONE = frozenset({Database.backup})


def _blob(payload: bytes) -> bytes:
    """
    C{payload} as C{bytes}: a C{str} would be stored as TEXT and come back as
    C{str}, so it is refused here, to its caller alone.
    """
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes, not {type(payload).__name__}")


@implementer(IMessageStore, IBackupSource)
class SQLiteMessageStore:
    """
    An L{IMessageStore} in the SQLite file at C{path}, which can back
    itself up (L{IBackupSource}).

    Like C{adbapi.ConnectionPool}, it starts its thread and opens the file
    once the reactor runs - not at construction, which may happen before
    C{twistd} forks into the background and would leave the thread behind -
    and closes itself before the reactor shuts down.  Operations asked for
    before the file is open wait for it.  L{open} (or L{start}) opens it now
    and says when it is done, or why it failed.

    @param reactor: provides C{IReactorTime}, C{IReactorFromThreads} and
        C{IReactorCore}.
    @param openHook: called in the store's thread with each new connection,
        like C{adbapi}'s C{cp_openfun}.
    @param maxBatch: the most operations one transaction takes, so one huge
        turn cannot hold the write lock (or delay its first caller) for long.
    """

    log = Logger()

    def __init__(self, path: str, reactor: Any, *, openHook: OpenHook | None = None, maxBatch: int = 1000) -> None:
        self.path = path
        self._reactor = reactor
        self._openHook = openHook
        self._maxBatch = maxBatch
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"SQLiteMessageStore({path})")
        self._database = Database()
        self._pending: list[_Pending] = []
        self._flushCall: IDelayedCall | None = None
        # Busy until the file is open: operations wait in _pending.
        self._busy = True
        self._state = "new"
        self._openFailure: Failure | None = None
        self._openWaiters: list[Deferred[None]] = []
        self._closeWaiters: list[Deferred[None]] = []
        self._shutdownTrigger: Any = None
        self._startupTrigger: Any = reactor.callWhenRunning(self._startAtStartup)

    @classmethod
    def open(cls, path: str, reactor: Any, **kwargs: Any) -> Deferred[SQLiteMessageStore]:
        """
        Open (creating if needed) the store at C{path} now.

        @return: a Deferred firing with the store once its schema exists.
        """
        store = cls(path, reactor, **kwargs)
        return store.start().addCallback(lambda _: store)

    def start(self) -> Deferred[None]:
        """
        Start the thread, connect and create the schema, unless that is
        already done or under way.

        @return: a Deferred firing when the file is open, or failing with
            why it could not be opened.
        """
        self._startNow()
        if self._state == "open":
            return succeed(None)
        if self._openFailure is not None:
            return fail(self._openFailure)
        if self._state != "opening":
            return fail(StoreClosedError(f"the store is {self._state}"))
        d: Deferred[None] = Deferred()
        self._openWaiters.append(d)
        return d

    def _startAtStartup(self) -> None:
        self._startupTrigger = None
        self._startNow()

    def _startNow(self) -> None:
        if self._state != "new":
            return
        if self._startupTrigger is not None:
            self._reactor.removeSystemEventTrigger(self._startupTrigger)
            self._startupTrigger = None
        self._state = "opening"
        self._pool.start()
        self._shutdownTrigger = self._reactor.addSystemEventTrigger("before", "shutdown", self._closeAtShutdown)
        d = self._inThread(self._database.open, self.path, self._openHook)
        d.addBoth(self._opened)

    def _opened(self, result: None | Failure) -> None:
        """
        The file is open, or could not be: then the store is closed, the
        operations that waited fail, and whoever waits in L{start} is told -
        or, if nobody does, the log.
        """
        self._busy = False
        waiters, self._openWaiters = self._openWaiters, []
        if isinstance(result, Failure):
            self._openFailure = result
            # The thread is idle (its job is done), so joining it is instant.
            self._pool.stop()
            self._state = "closed"
            self._removeShutdownTrigger()
            self._failPending(result)
            closeWaiters, self._closeWaiters = self._closeWaiters, []
            self._fireWaiters(closeWaiters, None)
            if not waiters:
                self.log.failure("Opening the message store {path} failed", result, path=self.path)
            self._fireWaiters(waiters, result)
            return
        if self._state == "opening":
            self._state = "open"
        self._fireWaiters(waiters, None)
        self._next()

    def _failPending(self, reason: Failure | Exception) -> None:
        pending, self._pending = self._pending, []
        for _, _, d in pending:
            d.errback(reason)

    def _inThread(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _enqueue(self, operation: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._state not in ("new", "opening", "open"):
            return fail(StoreClosedError(f"the store is {self._state}"))
        d: Deferred[Any] = Deferred()
        self._pending.append((operation, args, d))
        self._scheduleFlush()
        return d

    def _scheduleFlush(self) -> None:
        """
        Flush in the next reactor turn, so everything asked for in this turn
        shares one transaction - unless a batch is running, whose end flushes.
        """
        if self._flushCall is None and not self._busy and self._pending:
            self._flushCall = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flushCall = None
        if self._busy or not self._pending:
            return
        batch = self._takeJob()
        self._busy = True
        run = self._database.runAlone if batch[0][0] in _ALONE else self._database.runBatch
        d = self._inThread(run, [(operation, args) for operation, args, _ in batch])
        d.addBoth(self._batchDone, batch)
        d.addErrback(lambda f: self.log.failure("Delivering a batch's results failed", f))

    def _takeJob(self) -> list[_Pending]:
        """
        The next job: the operations waiting, up to C{maxBatch} and up to
        the first that must run alone - or that one, if it comes first.
        """
        size = 0
        for operation, _, _ in self._pending[: self._maxBatch]:
            if operation in _ALONE:
                size = size or 1
                break
            size += 1
        job = self._pending[:size]
        del self._pending[:size]
        return job

    def _batchDone(self, result: list[Any] | Failure, batch: list[_Pending]) -> None:
        """
        Fire each caller's Deferred with its own result, in order; if the
        transaction failed, nothing of it was kept, so every caller is told.

        A caller may have cancelled its Deferred; the operation still
        happened, and its result is dropped.
        """
        self._busy = False
        if isinstance(result, Failure):
            for _, _, d in batch:
                if not d.called:
                    d.errback(result)
        else:
            for (_, _, d), value in zip(batch, result, strict=True):
                if not d.called:
                    d.callback(value)
        self._next()

    def _next(self) -> None:
        """
        After a job: start the next batch, or finish closing.
        """
        if self._state != "closing":
            self._scheduleFlush()
        elif self._pending:
            self._flush()
        elif not self._busy:
            self._busy = True
            self._inThread(self._database.close).addBoth(self._closed)

    def _closed(self, result: None | Failure) -> None:
        self._busy = False
        self._pool.stop()
        self._state = "closed"
        waiters, self._closeWaiters = self._closeWaiters, []
        self._fireWaiters(waiters, result)

    @staticmethod
    def _fireWaiters(waiters: list[Deferred[None]], result: None | Failure) -> None:
        for d in waiters:
            if result is None:
                d.callback(None)
            else:
                d.errback(result)

    def _removeShutdownTrigger(self) -> None:
        if self._shutdownTrigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None

    def _closeAtShutdown(self) -> Deferred[None]:
        self._shutdownTrigger = None
        return self.close()

    def append(
        self, stream: str, payload: bytes, isBinary: bool, retention: Retention, now: float
    ) -> Deferred[StoredMessage]:
        """
        See L{IMessageStore.append}; it is committed with its turn's group.
        """
        try:
            payload = _blob(payload)
        except TypeError:
            return fail()
        return self._enqueue(Database.append, stream, payload, bool(isBinary), retention, now)

    def history(self, stream: str, since: Position | None, now: float) -> Deferred[History]:
        """
        See L{IMessageStore.history}; it sees every append asked for before it.
        """
        return self._enqueue(Database.history, stream, since, now)

    def queueOffline(
        self, uid: str, payload: bytes, isBinary: bool, limits: OfflineLimits, now: float
    ) -> Deferred[bool]:
        """
        See L{IMessageStore.queueOffline}.
        """
        try:
            payload = _blob(payload)
        except TypeError:
            return fail()
        return self._enqueue(Database.queueOffline, uid, payload, bool(isBinary), limits, now)

    def takeOffline(self, uid: str, now: float) -> Deferred[list[StoredMessage]]:
        """
        See L{IMessageStore.takeOffline}; the pushes are answered only once
        their removal is committed.
        """
        return self._enqueue(Database.takeOffline, uid, now)

    def markSeen(self, seen: Mapping[str, float]) -> Deferred[None]:
        """
        See L{IMessageStore.markSeen}; one operation however many uids,
        committed with its turn's group.
        """
        return self._enqueue(Database.markSeen, list(seen.items()))

    def wasSeen(self, uid: str, now: float) -> Deferred[bool]:
        """
        See L{IMessageStore.wasSeen}.
        """
        return self._enqueue(Database.wasSeen, uid, now)

    def offlineUids(self, now: float) -> Deferred[set[str]]:
        """
        See L{IMessageStore.offlineUids}.
        """
        return self._enqueue(Database.offlineUids, now)

    def prune(self, now: float) -> Deferred[int]:
        """
        See L{IMessageStore.prune}.
        """
        return self._enqueue(Database.prune, now)

    def backup(self) -> Deferred[IO[bytes]]:
        """
        See L{IBackupSource.backup}: a job of its own in the store's thread,
        after the operations asked for before it; those asked for while it
        runs wait for it, as for any job, for about the time it takes to
        write the database's size to disk.
        """
        return self._enqueue(Database.backup)

    def close(self) -> Deferred[None]:
        """
        Finish every operation already asked for, close the connection and
        stop the thread.  Later operations fail with L{StoreClosedError}.
        """
        if self._state == "new":
            if self._startupTrigger is not None:
                self._reactor.removeSystemEventTrigger(self._startupTrigger)
                self._startupTrigger = None
            self._state = "closed"
            self._failPending(StoreClosedError("the store was closed before it was opened"))
        if self._state == "closed":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closeWaiters.append(d)
        if self._state != "closing":
            self._state = "closing"
            self._removeShutdownTrigger()
            if self._flushCall is not None:
                self._flushCall.cancel()
                self._flushCall = None
            if not self._busy:
                self._next()
        return d
