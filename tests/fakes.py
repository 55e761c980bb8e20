"""
Verified fakes shared by the tests: each provides the real interface and is
checked with C{verifyObject} in C{tests/test_fakes.py}.

The fakes a plugin author needs too (L{FakeSession}) live in the public kit,
C{realtime.testing}, and are imported here so the tests that use them with
these need one import; the ones here stand in for the server's own
collaborators (brokers, stores), which no plugin sees.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from realtime.interfaces import (
    IBackupSource,
    IBatchBroker,
    IBatchPublisher,
    IBroker,
    IFirstMessageAuthenticator,
    IMessageStore,
    IPublisher,
)
from realtime.push.batch import oneByOne
from realtime.store.memory import MemoryMessageStore
from realtime.testing import FakeSession
from realtime.values import Envelope, HandshakeRequest, PushResult

__all__ = (
    "FakeSession",
    "ScriptedAuthenticator",
    "ManualBroker",
    "GatedStore",
    "FaultyStore",
    "ManualBackupStore",
    "TurnClock",
    "FakeProcess",
    "ProcessClock",
)


@implementer(IFirstMessageAuthenticator)
class ScriptedAuthenticator:
    """
    Answers the handshake and first message with values (or Deferreds) set
    by the test, and records the requests it was asked about.
    """

    def __init__(self, handshakeAnswer: object, firstAnswer: object = None) -> None:
        self.handshakeAnswer = handshakeAnswer
        self.firstAnswer = firstAnswer
        self.requests: list[HandshakeRequest] = []

    def checkHandshake(self, request: HandshakeRequest) -> object:
        self.requests.append(request)
        return self.handshakeAnswer

    def checkFirstMessage(self, request: HandshakeRequest, payload: bytes, isBinary: bool) -> object:
        return self.firstAnswer


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


@implementer(IBatchPublisher)
class ManualBatchPublisher(ManualBroker):
    """
    A publisher with a batch path whose batches' Deferreds the test fires
    by hand; a single publish is L{ManualBroker}'s.

    @ivar batches: C{(envelopes, deferred)} for each batch, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[list[Envelope], Deferred[list[Any]]]] = []

    def publishBatch(self, envelopes: Sequence[Envelope]) -> Deferred[list[Any]]:
        d: Deferred[list[Any]] = Deferred()
        self.batches.append((list(envelopes), d))
        return d


@implementer(IBatchBroker)
class BatchingBroker:
    """
    A broker with a batch path over a real one (each batch published one
    push at a time through it), recording the batches it was given: what
    the router does with a broker like Redis's, without Redis.

    @ivar batches: the envelopes of each batch, in order.
    """

    def __init__(self, inner: IBroker) -> None:
        self.inner = inner
        self.batches: list[list[Envelope]] = []

    @property
    def problem(self) -> str | None:
        return self.inner.problem

    def publish(self, envelope: Envelope) -> Any:
        return self.inner.publish(envelope)

    def publishBatch(self, envelopes: Sequence[Envelope]) -> Deferred[list[Any]]:
        self.batches.append(list(envelopes))
        return oneByOne(self.inner.publish, envelopes)

    def connectionCount(self, uid: str) -> Deferred[int]:
        return self.inner.connectionCount(uid)

    def stats(self) -> Deferred[dict[str, Any]]:
        return self.inner.stats()

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        return self.inner.presence(channel)


class PassingSubscription:
    """
    What the registry indexes under a channel, writing everything it is
    given: a test then sees what a broker delivers (duplicates and disorder
    included), not what a real subscription
    (L{realtime.core.subscription.Subscription}, which drops offsets it
    already wrote) lets through.
    """

    def __init__(self, session: FakeSession, channel: str) -> None:
        self.session = session
        self.channel = channel
        self.uid = session.uid

    def sendPrepared(self, frame: Any) -> bool:
        return self.session.sendPrepared(frame)


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


class TurnClock(Clock):
    """
    A L{Clock} whose C{advance(0)} is one reactor turn: like the real
    reactor, calls scheduled during a turn run in the next one.
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        due = [c for c in self.calls if c.getTime() <= self.seconds()]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


@implementer(IProcessTransport)
class FakeProcess:
    """
    A child process that runs until the test ends it (L{ProcessClock.end}),
    recording the signals it is sent.
    """

    def __init__(self, protocol: Any, pid: int) -> None:
        self.protocol = protocol
        self.pid: int | None = pid
        self.signals: list[str] = []

    def signalProcess(self, signalID: str | int) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(str(signalID))

    def closeStdin(self) -> None:
        pass

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        pass

    def writeToChild(self, childFD: int, data: bytes) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


@implementer(IReactorProcess)
class ProcessClock(Clock):
    """
    A L{Clock} that starts L{FakeProcess}es instead of processes, and
    records what it is asked to stop reading.

    @ivar spawned: each C{spawnProcess} call's keyword arguments, with its
        C{process}.
    """

    def __init__(self) -> None:
        Clock.__init__(self)
        self.spawned: list[dict[str, Any]] = []
        self.removedReaders: list[Any] = []

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: Any,
        args: Any,
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: Any = False,
        childFDs: Any = None,
    ) -> FakeProcess:
        process = FakeProcess(processProtocol, 1000 + len(self.spawned))
        self.spawned.append(
            {
                "executable": executable,
                "args": list(args),
                "env": env,
                "path": path,
                "childFDs": dict(childFDs or {}),
                "process": process,
            }
        )
        processProtocol.makeConnection(process)
        return process

    def removeReader(self, reader: Any) -> None:
        self.removedReaders.append(reader)

    def end(self, process: FakeProcess, signal: int | None = None, status: int = 0) -> None:
        """
        End C{process} as the kernel would: by C{signal}, or with C{status}.
        """
        process.pid = None
        reason = (
            ProcessTerminated(None, signal)
            if signal is not None
            else ProcessTerminated(status)
            if status
            else ProcessDone(0)
        )
        process.protocol.processEnded(Failure(reason))
