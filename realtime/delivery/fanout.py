"""
Fan-out: a message is framed once and written to each recipient.

Framing happens once per message, not once per connection (L{Frame}).  The
write itself goes through the turn writer (L{realtime.delivery.writer}),
which joins everything written to one connection in a reactor turn and sends
it at the turn's end, so every frame queued for one connection in one turn
leaves in one C{send} system call.  Audiences larger than C{chunkSize} are
written over several reactor turns, at most C{chunkSize} writes and
C{sessionsPerTurn} sessions per turn, so handshakes, pings and other pushes
keep flowing during a 100,000-connection broadcast.  Broadcasts waiting for
the same audience are written in one sweep of it (L{Fanout._sweep}): each
connection visited gets the frames of all of them at once, however they
arrived, which is what makes a big audience as cheap per delivery as a
small one; and the short turns are what let broadcasts that arrive during
a sweep join it.  Deliveries are started in the order they were asked for,
so a connection never sees a later push before an earlier one.  Other
per-item work a backend request asks for (one step per uid of a push to
10,000 uids, queueing for each uid without a connection) runs through the
same queue with L{Fanout.each}: one budget per reactor turn for all of it,
and a push's steps stay in order with the deliveries around it.
"""

from __future__ import annotations

import struct
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from realtime.interfaces import ISession

_T = TypeVar("_T")

_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


#: the two bytes that start a text or binary frame of each length below 126
_TEXT_HEADS = [bytes((0x81, n)) for n in range(126)]
_BINARY_HEADS = [bytes((0x82, n)) for n in range(126)]


def frameMessage(payload: bytes, isBinary: bool = False) -> bytes:
    """
    The bytes of one unmasked, unfragmented, uncompressed server frame.
    """
    n = len(payload)
    if n < 126:
        # a table's header, not bytes((b0, n)): a quarter of the cost, on
        # every unicast delivery
        return (_BINARY_HEADS if isBinary else _TEXT_HEADS)[n] + payload
    b0 = 0x82 if isBinary else 0x81
    if n < 65536:
        return _SHORT.pack(b0, 126, n) + payload
    return _LONG.pack(b0, 127, n) + payload


class Frame:
    """
    A message ready to be written to any number of sessions.

    @ivar wire: the frame's bytes, for sessions without compression (and for
        compressed sessions too: RFC 7692 lets a sender mix uncompressed
        messages in, and compressing once per connection is exactly the cost
        fan-out is avoiding).
    @ivar offset: the message's offset in its channel's history, if kept.
    @ivar epoch: and that history's epoch, where known (offsets start over
        in a new one).
    """

    __slots__ = ("payload", "isBinary", "wire", "offset", "epoch")

    def __init__(
        self, payload: bytes, isBinary: bool = False, offset: int | None = None, epoch: str | None = None
    ) -> None:
        self.payload = payload
        self.isBinary = isBinary
        self.wire = frameMessage(payload, isBinary)
        self.offset = offset
        self.epoch = epoch


class _Job:
    """
    One frame for one audience snapshot; C{left} sessions of it not yet
    visited by the sweep (see L{Fanout._runChunk}).
    """

    __slots__ = ("sessions", "frame", "left", "count", "deferred")

    def __init__(self, sessions: Sequence[ISession], frame: Frame) -> None:
        self.sessions = sessions
        self.frame = frame
        self.left = len(sessions)
        self.count = 0
        self.deferred: Deferred[int] = Deferred()


class _Steps:
    """
    Work given to L{Fanout.each}: C{step} for each of C{items}, resumable.
    """

    __slots__ = ("items", "step", "position", "deferred")

    def __init__(self, items: Sequence[object], step: Callable[[object], int]) -> None:
        self.items = items
        self.step = step
        self.position = 0
        self.deferred: Deferred[None] = Deferred()

    def run(self, budget: int) -> int:
        """
        Run steps until C{budget} is spent or none is left.

        @return: the cost spent (the last step may overshoot the budget).
        """
        items, step = self.items, self.step
        i, end, spent = self.position, len(items), 0
        while i < end and spent < budget:
            spent += step(items[i])
            i += 1
        self.position = i
        return spent

    @property
    def done(self) -> bool:
        return self.position == len(self.items)


class Fanout:
    """
    Writes frames to sessions, at most C{chunkSize} writes (a frame to a
    session) and C{sessionsPerTurn} sessions per reactor turn once a
    delivery is too large to finish at once (or one session's frames, when
    more broadcasts than that sweep together).

    @ivar delivered: frames sessions accepted, in all (for the metrics).
    """

    log = Logger()

    #: the smallest audience a burst (L{burst}) sweeps instead of writing
    #: at once: a smaller one stays in the CPU's caches from one message to
    #: the next, and at 500 sessions sweeping measured no better
    SWEEP_FROM = 1000

    def __init__(self, reactor: IReactorTime, chunkSize: int = 5000, sessionsPerTurn: int = 200) -> None:
        """
        @param sessionsPerTurn: how many sessions a sweep visits in one turn.
            Each visit is a C{send()} at the turn's end, so this bounds the
            turn's length; and between turns the reactor reads, so a message
            that arrives meanwhile joins the sweep and goes out in the same
            sends as those before it.  Broadcasts to two nodes with 5,000
            sessions each (C{bench/processcpu.py --peer ours-redis
            --scenario fanout}): a whole audience per turn gave 2.8 frames
            per send, 200 sessions a turn 6.8 and half the CPU per delivery;
            the single process gained too, and deep pipelines, whose sweeps
            carry dozens of frames, were level.
        """
        self._reactor = reactor
        self.chunkSize = chunkSize
        self.sessionsPerTurn = sessionsPerTurn
        self._jobs: deque[_Job | _Steps] = deque()
        self._scheduled: IDelayedCall | None = None
        self._bursting = False
        self.delivered = 0
        #: the audience being swept and the sweep's next position in it
        self._sweepSessions: Sequence[ISession] | None = None
        self._cursor = 0

    @property
    def pending(self) -> int:
        """
        Deliveries waiting for a later reactor turn.
        """
        return len(self._jobs)

    def deliver(self, sessions: Sequence[ISession], frame: Frame) -> Deferred[int]:
        """
        Write C{frame} to each of C{sessions} (a snapshot).

        @return: a Deferred firing with how many sessions accepted it.
        """
        count = self.deliverNow(sessions, frame)
        if count is not None:
            return succeed(count)
        job = _Job(sessions, frame)
        self._jobs.append(job)
        self._schedule()
        return job.deferred

    def deliverNow(self, sessions: Sequence[ISession], frame: Frame) -> int | None:
        """
        Like L{deliver}, synchronously: the count, or C{None} (and nothing
        written) when the delivery would have to wait its turn or be chunked.
        """
        if self._jobs or len(sessions) > self.chunkSize or (self._bursting and len(sessions) >= self.SWEEP_FROM):
            return None
        # L{write}'s loop inlined: this is every unicast push's path, and a
        # call more per push shows in bench/inprocess.py
        count = 0
        for session in sessions:
            if session.sendPrepared(frame):
                count += 1
        self.delivered += count
        return count

    def write(self, sessions: Sequence[ISession], frame: Frame) -> int:
        """
        Write C{frame} to each of C{sessions} now, whatever waits: only for
        a step of L{each}, which runs in its turn.

        @return: how many sessions accepted it.
        """
        count = 0
        for session in sessions:
            if session.sendPrepared(frame):
                count += 1
        self.delivered += count
        return count

    def each(self, items: Sequence[_T], step: Callable[[_T], int]) -> Deferred[None]:
        """
        Call C{step} with each of C{items}, in order, after every delivery
        and step asked for earlier: at once while that fits in one chunk,
        the rest at most C{chunkSize} per reactor turn.

        @param step: does the work of one item (writing with L{write} is in
            order) and returns its cost in session writes, at least 1.
        @return: a Deferred firing once every step ran.
        """
        job = _Steps(items, cast(Callable[[object], int], step))
        if not self._jobs:
            job.run(self.chunkSize)
            if job.done:
                return succeed(None)
        self._jobs.append(job)
        self._schedule()
        return job.deferred

    @contextmanager
    def burst(self) -> Iterator[None]:
        """
        Deliver several messages that came together (a burst read from
        another node) as one: their deliveries to big audiences (from
        C{SWEEP_FROM} sessions) wait and
        are swept together (L{_sweep}) when the burst ends, so each session
        is visited once for all of them rather than once per message; a
        delivery behind them waits too, which keeps every session's order.

        Walking a 5,000-session audience once per message of a 50-message
        burst cost 2.7x the CPU per delivery of sweeping it once
        (bench/README.rst, The scale-out groups).  The first turn's worth
        (L{sessionsPerTurn} sessions) is written as the burst ends, the
        rest in the next reactor turns, as any chunked delivery is.
        """
        idle = not self._jobs
        self._bursting = True
        try:
            yield
        finally:
            self._bursting = False
            if idle and self._jobs:
                if self._scheduled is not None:
                    self._scheduled.cancel()
                self._runChunk()

    def _schedule(self) -> None:
        if self._scheduled is None:
            self._scheduled = self._reactor.callLater(0, self._runChunk)

    def _runChunk(self) -> None:
        """
        Do up to C{chunkSize} writes' worth of the waiting work, visiting at
        most C{sessionsPerTurn} sessions, in order.
        """
        self._scheduled = None
        budget, visits = self.chunkSize, self.sessionsPerTurn
        jobs = self._jobs
        while jobs and budget > 0 and visits > 0:
            head = jobs[0]
            if isinstance(head, _Steps):
                budget -= head.run(budget)
                if head.done:
                    jobs.popleft()
                    head.deferred.callback(None)
                continue
            visited, spent = self._sweep(head, budget, visits, budget == self.chunkSize)
            if not visited:
                break
            budget -= spent
            visits -= visited
        if jobs:
            self._schedule()

    def _sweep(self, head: _Job, budget: int, visits: int, first: bool) -> tuple[int, int]:
        """
        Write the next sessions of C{head}'s audience: every waiting
        delivery to that same audience that directly follows C{head} (one
        sweep) gets its frame written to each of them, in order.

        The sweep walks the audience in a circle from where it stands; a
        delivery joins it where it stands now and is done once the sweep
        has come round to that place again.  So however the broadcasts
        arrive (all at once, or one every reactor turn while a walk is
        halfway), each session gets every frame pending for it in one
        C{send()}: walking one broadcast's audience after another's, or
        only together when they start at the same place, gave a session
        one frame per send once broadcasts arrived while a walk was under
        way.  Order holds per session: a delivery joins after those already
        sweeping, stays in the sweep until it has visited everyone, and a
        delivery to another audience (or L{each}'s steps) ends the sweep
        for what comes behind it, so nothing overtakes it.

        @param visits: the most sessions this may visit.
        @param first: whether this is the turn's first step, which visits
            at least one session even if that overshoots C{budget}.
        @return: the sessions visited, 0 if the rest of the budget is too
            small for one, and the writes spent (visited sessions times
            sweeping frames).
        """
        sessions = head.sessions
        jobs = self._jobs
        if sessions is not self._sweepSessions or head.left == len(sessions):
            # a new sweep: nothing of this audience is half-visited
            self._sweepSessions = sessions
            self._cursor = 0
        sweeping: list[_Job] = []
        for job in jobs:
            if isinstance(job, _Steps) or job.sessions is not sessions:
                break
            sweeping.append(job)
        start = self._cursor
        span = min(budget // len(sweeping), visits)
        if not span:
            if not first:
                return 0, 0
            span = 1
        # the head joined first, so it has the fewest sessions left
        end = start + min(span, len(sessions) - start, head.left)
        if len(sweeping) == 1:
            frame = head.frame
            count = 0
            for i in range(start, end):
                if sessions[i].sendPrepared(frame):
                    count += 1
            head.count += count
            self.delivered += count
        else:
            frames = [job.frame for job in sweeping]
            counts = [0] * len(sweeping)
            for i in range(start, end):
                session = sessions[i]
                for k, frame in enumerate(frames):
                    if session.sendPrepared(frame):
                        counts[k] += 1
            for job, count in zip(sweeping, counts, strict=True):
                job.count += count
            self.delivered += sum(counts)
        span = end - start
        for job in sweeping:
            job.left -= span
        self._cursor = 0 if end == len(sessions) else end
        while jobs:
            done = jobs[0]
            if isinstance(done, _Steps) or done.left:
                break
            jobs.popleft()
            done.deferred.callback(done.count)
        return span, max(1, span * len(sweeping))
