"""
Verified fakes shared by the tests: each provides the real interface and is
checked with C{verifyObject} in C{tests/test_fakes.py}.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import alsoProvides, implementer

from realtime import closecodes
from realtime.delivery.fanout import Frame
from realtime.interfaces import IBackupSource, IBroker, IMessageStore, IPublisher, ISession
from realtime.store.memory import MemoryMessageStore
from realtime.values import Envelope, Identity, PushResult


@implementer(ISession)
class FakeSession:
    """
    A session that records what it was sent instead of writing to a socket.

    @ivar sent: C{(payload, isBinary)} of each frame, in order.
    @ivar closed: C{(code, reason)} once closed.
    """

    def __init__(self, uid: str, sessionId: str | None = None, *, open: bool = True) -> None:
        self.identity = Identity(uid=uid)
        self.uid = uid
        self.sessionId = sessionId or f"{uid}#{id(self):x}"
        self.open = open
        self.sent: list[tuple[bytes, bool]] = []
        self.closed: tuple[int, str] | None = None
        self._held: list[Frame] | None = None

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Record C{frame} if open (or hold it while holding).
        """
        if not self.open:
            return False
        if self._held is not None:
            self._held.append(frame)
            return True
        self.sent.append((frame.payload, frame.isBinary))
        return True

    def holdDeliveries(self) -> None:
        """
        Hold frames back.
        """
        if self._held is None:
            self._held = []

    def releaseDeliveries(self, first: Any = ()) -> None:
        """
        Record C{first}, then what was held.
        """
        held, self._held = self._held or [], None
        for frame in list(first) + held:
            self.sendPrepared(frame)

    def isOpen(self) -> bool:
        """
        Whether it is open.
        """
        return self.open

    def close(self, code: int = closecodes.NORMAL, reason: str = "") -> None:
        """
        Record the close.
        """
        self.open = False
        self.closed = (code, reason)

    @property
    def texts(self) -> list[str]:
        """
        The text frames received, decoded.
        """
        return [p.decode("utf-8") for p, b in self.sent if not b]


@implementer(IBroker, IPublisher)
class ManualBroker:
    """
    A broker (or, for a port, a router) whose publish Deferreds the test
    fires by hand, in any order: the answer that comes later.

    @ivar published: C{(envelope, deferred)} for each publish, in order.
    @ivar problem: what the broker reports about itself (L{IBroker.problem});
        a test sets it to play a broker cut off from its server.
    """

    def __init__(self) -> None:
        self.published: list[tuple[Envelope, Deferred[PushResult]]] = []
        self.problem: str | None = None

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        d: Deferred[PushResult] = Deferred()
        self.published.append((envelope, d))
        return d

    def connectionCount(self, uid: str) -> Deferred[int]:
        return succeed(0)

    def stats(self) -> Deferred[dict[str, Any]]:
        return succeed({})

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        return succeed({"channel": channel, "uids": {}, "connections": 0})


@implementer(IMessageStore)
class GatedStore:
    """
    A real store whose answers wait at a gate until the test opens it, in
    the order they were asked for: a store on disk answers later, and the
    router must be right whatever happens in between.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gated = True
        self._waiting: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def _gate(self, d: Deferred[Any]) -> Deferred[Any]:
        if not self.gated and not self._waiting:
            return d
        outer: Deferred[Any] = Deferred()
        self._waiting.append((d, outer))
        return outer

    def open(self, count: int | None = None) -> None:
        """
        Let the next C{count} (default: all) waiting answers through, in order.
        """
        n = len(self._waiting) if count is None else count
        for _ in range(n):
            inner, outer = self._waiting.pop(0)
            inner.chainDeferred(outer)

    def drain(self) -> None:
        """
        Open the gate until nothing waits, including answers asked for by
        callbacks of earlier ones.
        """
        while self._waiting:
            self.open()

    @property
    def waiting(self) -> int:
        """
        How many answers wait at the gate.
        """
        return len(self._waiting)

    def append(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.append(*a))

    def history(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.history(*a))

    def queueOffline(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.queueOffline(*a))

    def takeOffline(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.takeOffline(*a))

    def markSeen(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.markSeen(*a))

    def wasSeen(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.wasSeen(*a))

    def offlineUids(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.offlineUids(*a))

    def prune(self, *a: Any) -> Deferred[Any]:
        return self._gate(self.inner.prune(*a))

    def close(self) -> Deferred[Any]:
        return self.inner.close()


@implementer(IMessageStore)
class FaultyStore:
    """
    A real store that fails every operation with C{fault} while it is set,
    as a store on a full or broken disk does; reads may be let through
    (C{readsWork}), as a full disk still serves them.

    @ivar calls: operations asked for, in all.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fault: Exception | None = None
        self.readsWork = False
        self.calls = 0
        if IBackupSource.providedBy(inner):
            alsoProvides(self, IBackupSource)

    def _call(self, name: str, args: tuple[Any, ...], writes: bool = True) -> Deferred[Any]:
        self.calls += 1
        if self.fault is not None and (writes or not self.readsWork):
            return fail(self.fault)
        return getattr(self.inner, name)(*args)

    def append(self, *a: Any) -> Deferred[Any]:
        return self._call("append", a)

    def history(self, *a: Any) -> Deferred[Any]:
        return self._call("history", a, writes=False)

    def queueOffline(self, *a: Any) -> Deferred[Any]:
        return self._call("queueOffline", a)

    def takeOffline(self, *a: Any) -> Deferred[Any]:
        return self._call("takeOffline", a)

    def markSeen(self, *a: Any) -> Deferred[Any]:
        return self._call("markSeen", a)

    def wasSeen(self, *a: Any) -> Deferred[Any]:
        return self._call("wasSeen", a, writes=False)

    def offlineUids(self, *a: Any) -> Deferred[Any]:
        return self._call("offlineUids", a, writes=False)

    def prune(self, *a: Any) -> Deferred[Any]:
        return self._call("prune", a)

    def backup(self) -> Deferred[Any]:
        return self._call("backup", (), writes=False)

    def close(self) -> Deferred[Any]:
        return self.inner.close()


@implementer(IBackupSource)
class ManualBackupStore(MemoryMessageStore):
    """
    A memory store that is also an L{IBackupSource} whose copies the test
    hands over by hand, as a store on disk answers later.

    @ivar asked: the Deferred of each backup asked for and not yet given.
    @ivar copies: every copy given, to check it was closed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[Deferred[IO[bytes]]] = []
        self.copies: list[IO[bytes]] = []

    def backup(self) -> Deferred[IO[bytes]]:
        d: Deferred[IO[bytes]] = Deferred()
        self.asked.append(d)
        return d

    def give(self, data: bytes) -> IO[bytes]:
        """
        Answer the oldest backup with a copy holding C{data}: a real
        unnamed file, as the SQLite store's is.
        """
        copy = tempfile.TemporaryFile()
        copy.write(data)
        copy.seek(0)
        self.copies.append(copy)
        self.asked.pop(0).callback(copy)
        return copy
