"""
Whether the message store works, as its callers see it.

A store fails as a whole - a full disk, a file made read-only, an I/O error
- and then every push that needs it fails the same way.  Logging each of
those with a traceback floods the very disk that is full, and says nothing
new.  L{MonitoredStore} wraps any L{IMessageStore}: it logs once when the
store starts failing and once when it works again, answers callers with
L{StoreUnavailable} (why, in a sentence) or, once the store is closing for
shutdown, L{ShuttingDown}, and keeps the reason for ``/readyz``.
"""

from __future__ import annotations

from typing import IO, Any, Mapping

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from realtime.interfaces import IBackupSource, IMessageStore
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage


class StoreUnavailable(Exception):
    """
    The message store failed an operation; C{str()} says why, for the
    backend's answer.  The traceback was logged once, when it started
    failing.
    """


class ShuttingDown(Exception):
    """
    The server is stopping and its store is closed or closing: try again
    later, or on another node.
    """


def logUnlessKnown(log: Logger, failure: Failure, message: str, **kw: Any) -> None:
    """
    Log C{failure} with its traceback, unless it is a store failure
    L{MonitoredStore} has logged already or the shutdown.
    """
    if not failure.check(StoreUnavailable, ShuttingDown):
        log.failure(message, failure, **kw)


@implementer(IMessageStore)
class MonitoredStore:
    """
    An L{IMessageStore} that tells how C{inner} is doing; an
    L{IBackupSource} too if C{inner} is one.

    The store counts as failing from its first failed operation until an
    operation that writes succeeds (a read may succeed on a full disk).

    @ivar problem: why the store is failing, or C{None} while it works.
    @ivar failures: operations that failed, in all.
    """

    log = Logger()

    def __init__(self, inner: IMessageStore) -> None:
        self.inner = inner
        self.problem: str | None = None
        self.failures = 0
        self._closing = False
        if IBackupSource.providedBy(inner):
            alsoProvides(self, IBackupSource)

    def _watch(self, d: Deferred[Any], writes: bool) -> Deferred[Any]:
        return d.addCallbacks(self._worked, self._failed, callbackArgs=(writes,))

    def watch(self, d: Deferred[Any], writes: bool = True) -> Deferred[Any]:
        """
        Count an operation C{inner} does for another part (the Redis
        broker's publish that appends to history, C{realtime.wiring}) as one
        of this store's: its failure is answered and reported as the
        store's, not logged as a bug at every push.
        """
        return self._watch(d, writes)

    def _worked(self, result: Any, writes: bool) -> Any:
        if writes and self.problem is not None:
            self.log.info("message store working again (after {failures} failed operations)", failures=self.failures)
            self.problem = None
        return result

    def _failed(self, failure: Failure) -> Failure:
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if failure.check(TypeError, ValueError):
            # a caller's mistake (a str payload), not the store's
            return failure
        self.failures += 1
        reason = failure.getErrorMessage() or getattr(failure.type, "__name__", "error")
        if self.problem is None:
            self.problem = reason
            self.log.failure(
                "message store failing ({reason}); what needs it is answered with errors until it works again",
                failure,
                reason=reason,
            )
        raise StoreUnavailable(f"message store unavailable ({reason})")

    def append(
        self, stream: str, payload: bytes, isBinary: bool, retention: Retention, now: float
    ) -> Deferred[StoredMessage]:
        return self._watch(self.inner.append(stream, payload, isBinary, retention, now), True)

    def history(self, stream: str, since: Position | None, now: float) -> Deferred[History]:
        return self._watch(self.inner.history(stream, since, now), False)

    def queueOffline(
        self, uid: str, payload: bytes, isBinary: bool, limits: OfflineLimits, now: float
    ) -> Deferred[bool]:
        return self._watch(self.inner.queueOffline(uid, payload, isBinary, limits, now), True)

    def takeOffline(self, uid: str, now: float) -> Deferred[list[StoredMessage]]:
        return self._watch(self.inner.takeOffline(uid, now), True)

    def markSeen(self, seen: Mapping[str, float]) -> Deferred[None]:
        return self._watch(self.inner.markSeen(seen), True)

    def wasSeen(self, uid: str, now: float) -> Deferred[bool]:
        return self._watch(self.inner.wasSeen(uid, now), False)

    def offlineUids(self, now: float) -> Deferred[set[str]]:
        return self._watch(self.inner.offlineUids(now), False)

    def prune(self, now: float) -> Deferred[int]:
        return self._watch(self.inner.prune(now), True)

    def backup(self) -> Deferred[IO[bytes]]:
        """
        C{inner}'s backup: a read, as far as the store's health goes.
        """
        return self._watch(IBackupSource(self.inner).backup(), False)

    def close(self) -> Deferred[None]:
        """
        Close C{inner}; from now on every failure means "shutting down".
        """
        self._closing = True
        return self.inner.close()
