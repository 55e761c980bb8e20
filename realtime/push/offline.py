"""
Offline queues: pushes to a uid without a connection wait for its next one.

Every change to one uid's queue - a push being queued, a connection taking
what waits - runs strictly in order through a L{KeyedSerializer}.  That is
what makes a push that races a connecting uid land exactly once: either it
is queued before the connection's drain (and drained), or it finds the
connection registered (and is delivered live, held back behind the drained
ones).  Only uids that connected lately get a queue (C{IMessageStore.wasSeen}),
so a push to a uid that never connected is answered as undelivered.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout, Frame
from realtime.interfaces import IBroker, IMessageStore, ISession
from realtime.store.health import logUnlessKnown
from realtime.values import Envelope, OfflineLimits, PushResult, ToUids

#: how often, at most, a connecting uid's "seen" time is written
SEEN_REFRESH = 3600.0

#: seconds connections' "seen" times are collected before being written
#: together: a connection costs the store nothing by itself
SEEN_FLUSH_DELAY = 1.0

#: the same with a store other nodes share: the end of the reactor turn.  A
#: node killed before its write would take the record with it, and the
#: other nodes would answer pushes for the uid that just left C{fail}
#: rather than queue them; the Redis store sends one turn's writes in one
#: round trip anyway, so waiting longer would save nothing
SHARED_SEEN_FLUSH_DELAY = 0.0

#: what starting to queue one uid's push costs, in the fan-out's unit (one
#: session written): its serializer job and store operation are a few
#: Deferreds each, so a turn starts a few hundred rather than thousands
QUEUE_STEP_COST = 16

Framing = Callable[[bytes, bool], "tuple[bytes, bool]"]


class _Gathered:
    """
    The outcomes of one push's queueing jobs, in the order they were
    started: C{gatherResults} without attaching to every job in one turn
    (jobs are watched as L{Fanout.each} starts them).

    @ivar done: fires with the outcomes once every job has ended, or with
        the first failure (the others are consumed).
    """

    def __init__(self, count: int) -> None:
        self._values: list[Any] = []
        self._remaining = count
        self._failure: Failure | None = None
        self.done: Deferred[list[Any]] = Deferred()

    def watch(self, job: Deferred[Any]) -> None:
        """
        Count C{job} in, in its place.
        """
        i = len(self._values)
        self._values.append(None)
        job.addCallbacks(self._ended, self._failed, callbackArgs=(i,))

    def _ended(self, value: Any, i: int) -> None:
        self._values[i] = value
        self._settle()

    def _failed(self, failure: Failure) -> None:
        if self._failure is None:
            self._failure = failure
        self._settle()

    def _settle(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            if self._failure is not None:
                self.done.errback(self._failure)
            else:
                self.done.callback(self._values)


class KeyedSerializer:
    """
    Runs jobs one at a time per key, in the order they were given.

    The offline queue of a uid is touched by pushes (append) and by
    connects (take); doing those strictly in order per uid is what makes a
    push at the moment of connecting land exactly once.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[Callable[[], Any], Deferred[Any]]]] = {}

    def run(self, key: str, job: Callable[[], Any]) -> Deferred[Any]:
        """
        Run C{job} after every earlier job of C{key}.
        """
        done: Deferred[Any] = Deferred()
        waiting = self._queues.get(key)
        if waiting is None:
            self._queues[key] = deque()
            self._start(key, job, done)
        else:
            waiting.append((job, done))
        return done

    def _start(self, key: str, job: Callable[[], Any], done: Deferred[Any]) -> None:
        maybeDeferred(job).addBoth(self._finished, key, done)

    def _finished(self, result: object, key: str, done: Deferred[Any]) -> None:
        waiting = self._queues[key]
        if waiting:
            self._start(key, *waiting.popleft())
        else:
            del self._queues[key]
        done.callback(result)

    def __len__(self) -> int:
        return len(self._queues)

    def __contains__(self, key: str) -> bool:
        return key in self._queues


class OfflineQueues:
    """
    The offline queues of every uid, in the store, with what this process
    knows about them cached: which uids connected lately (so a reconnect
    storm writes nothing) and which have pushes waiting (so a uid with none
    connects without a store read).

    @ivar queued: pushes queued.
    @ivar refused: pushes refused because the uid's queue was full.
    @ivar delivered: queued pushes delivered at a connection.

    With C{shared} (a store other nodes use too, C{--store redis://...}),
    another node may queue a push for any uid at any time, so this process
    caches nothing about who has pushes waiting: every connection drains.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        registry: SessionRegistry,
        broker: IBroker,
        store: IMessageStore,
        limits: OfflineLimits,
        frame: Framing,
        fanout: Fanout,
        shared: bool = False,
    ) -> None:
        self._reactor = reactor
        self._shared = shared
        self._registry = registry
        self._broker = broker
        self._store = store
        self.limits = limits
        self._frame = frame
        self._fanout = fanout
        self._serial = KeyedSerializer()
        self.queued = self.refused = self.delivered = 0
        self._seen: dict[str, float] = {}
        self._unsaved: dict[str, float] = {}
        self._saving: Any = None
        # uids with pushes waiting; None until the store answered, while
        # which every connecting uid is drained and every uid queued is
        # remembered apart to be added to the store's answer
        self._waiting: set[str] | None = None
        self._queuedWhileLoading: set[str] = set()
        # a store other nodes share may get a push for any uid at any time:
        # then nothing is cached and every connection drains its queue
        if not shared:
            store.offlineUids(reactor.seconds()).addCallbacks(self._waitingLoaded, self._ebWaiting)

    def _waitingLoaded(self, uids: set[str]) -> None:
        # the store answered in order, before any queueing asked after it
        self._waiting = set(uids) | self._queuedWhileLoading
        self._queuedWhileLoading = set()

    def _ebWaiting(self, failure: Failure) -> None:
        logUnlessKnown(
            self.log, failure, "reading which uids have offline messages failed; draining at every connection"
        )

    def _noteWaiting(self, uid: str) -> None:
        if self._shared:
            return
        if self._waiting is None:
            self._queuedWhileLoading.add(uid)
        else:
            self._waiting.add(uid)

    # -- a connection ----------------------------------------------------------

    def sessionOpened(self, session: ISession) -> None:
        """
        Remember the uid as seen; if pushes may wait for it, hold the
        session's deliveries and hand it those first.
        """
        uid = session.uid
        now = self._reactor.seconds()
        if now - self._seen.get(uid, -SEEN_REFRESH) >= SEEN_REFRESH:
            if len(self._seen) > 1_000_000:
                self._seen.clear()
            self._seen[uid] = now
            self._unsaved[uid] = now
            if self._saving is None:
                delay = SHARED_SEEN_FLUSH_DELAY if self._shared else SEEN_FLUSH_DELAY
                self._saving = self._reactor.callLater(delay, self.saveSeen)
        # a push being queued for this uid right now is in the serializer:
        # drain after it, or it would wait for the next connection
        if self._waiting is None or uid in self._waiting or uid in self._serial:
            session.holdDeliveries()
            self._serial.run(uid, lambda: self._drain(session)).addErrback(self._ebDrain, session)

    def saveSeen(self) -> None:
        """
        Write the uids that connected since the last call, in one turn (so
        the store commits them together).
        """
        self._saving = None
        unsaved, self._unsaved = self._unsaved, {}
        if unsaved:
            self._store.markSeen(unsaved).addErrback(
                lambda f: logUnlessKnown(self.log, f, "recording {count} connected uids failed", count=len(unsaved))
            )

    def stop(self) -> None:
        """
        Write what is unsaved now (at shutdown, before the store closes).
        """
        if self._saving is not None and self._saving.active():
            self._saving.cancel()
        self.saveSeen()

    def _drain(self, session: ISession) -> Deferred[None]:
        if not session.isOpen():
            session.releaseDeliveries(())
            return succeed(None)
        return self._store.takeOffline(session.uid, self._reactor.seconds()).addCallback(self._taken, session)

    def _taken(self, messages: list[Any], session: ISession) -> Deferred[None] | None:
        if messages and not session.isOpen():
            # taken, but the connection went away meanwhile: put them back,
            # still before anything queued later (this uid's jobs are serial)
            return self._requeue(session.uid, messages)
        if self._waiting is not None:
            self._waiting.discard(session.uid)
        frames = [Frame(*self._frame(m.payload, m.isBinary)) for m in messages]
        self.delivered += len(frames)
        session.releaseDeliveries(frames)
        return None

    def _requeue(self, uid: str, messages: list[Any]) -> Deferred[None]:
        d: Deferred[Any] = succeed(None)
        for m in messages:
            d.addCallback(self._requeueOne, uid, m)
        return d.addCallback(lambda _: None)

    def _requeueOne(self, _: object, uid: str, m: Any) -> Deferred[bool]:
        return self._store.queueOffline(uid, m.payload, m.isBinary, self.limits, m.timestamp)

    def _ebDrain(self, failure: Failure, session: ISession) -> None:
        logUnlessKnown(self.log, failure, "delivering offline messages to {uid} failed", uid=session.uid)
        session.releaseDeliveries(())

    # -- a push that reached nobody ------------------------------------------------

    def queueMissing(self, result: PushResult, payload: bytes, isBinary: bool) -> Deferred[PushResult] | PushResult:
        """
        Queue the push for each uid C{result} says it reached no connection of.
        """
        if 0 not in result.uids.values():
            # every uid reached (nearly every push): answered at once
            return result
        missing = [uid for uid, count in result.uids.items() if count == 0]
        gathered = _Gathered(len(missing))
        serial, queueOne = self._serial, self._queueOne

        def start(uid: str) -> int:
            gathered.watch(serial.run(uid, lambda: queueOne(uid, payload, isBinary)))
            return QUEUE_STEP_COST

        def combine(outcomes: list[tuple[str, int | str]]) -> PushResult:
            uids = dict(result.uids)
            queued, refused = [], []
            delivered = result.delivered
            for uid, outcome in outcomes:
                if outcome == "queued":
                    queued.append(uid)
                elif outcome == "full":
                    refused.append(uid)
                else:
                    uids[uid] = int(outcome)
                    delivered += int(outcome)
            return PushResult(delivered, uids, tuple(queued), tuple(refused))

        self._fanout.each(missing, start)
        return gathered.done.addCallback(combine)

    def _queueOne(self, uid: str, payload: bytes, isBinary: bool) -> Deferred[tuple[str, int | str]]:
        # the uid may have connected while this job waited its turn; a
        # connection that is closing does not count: the push would be lost
        # with it, so it waits for the next one like any other
        if any(session.isOpen() for session in self._registry.sessionsOf(uid)):
            framed, framedBinary = self._frame(payload, isBinary)
            published = self._broker.publish(Envelope(ToUids((uid,)), framed, framedBinary))
            if isinstance(published, Deferred):
                return published.addCallback(lambda result: (uid, result.delivered))
            return succeed((uid, published.delivered))
        now = self._reactor.seconds()

        def known(seen: bool) -> Deferred[tuple[str, int | str]] | tuple[str, int]:
            if not seen:
                return (uid, 0)
            return self._store.queueOffline(uid, payload, isBinary, self.limits, now).addCallback(stored)

        def stored(ok: bool) -> tuple[str, str]:
            if ok:
                self.queued += 1
                self._noteWaiting(uid)
                return (uid, "queued")
            self.refused += 1
            return (uid, "full")

        if uid in self._seen:
            return succeed(True).addCallback(known)
        return self._store.wasSeen(uid, now).addCallback(known)
