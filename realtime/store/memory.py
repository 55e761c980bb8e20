"""
The in-process message store: history and offline queues in dicts.

It is the embedded default and the reference the SQLite store is tested
against (C{tests/store_contract.py}): same answers, nothing on disk.  Its
epochs are created when a stream is first used, so a restarted server has new
epochs and resuming clients are told they lost messages instead of being
served offsets that now mean something else.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Mapping

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from realtime.interfaces import SEEN_RETENTION, IMessageStore
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage


@dataclass
class _Stream:
    """
    One channel's history.

    @ivar messages: the kept messages, oldest first; their offsets are
        consecutive, ending at C{top}.
    @ivar ttl: the retention asked for by the latest append; C{inf} until then.
    @ivar lastTimestamp: the newest timestamp given out, kept apart from
        C{messages} because pruning may empty them.
    """

    epoch: str
    top: int = 0
    messages: deque[StoredMessage] = field(default_factory=deque)
    ttl: float = math.inf
    lastTimestamp: float = -math.inf

    def expiredCount(self, now: float) -> int:
        """
        How many of the oldest messages are past C{ttl} at C{now}.

        Timestamps never decrease within a stream (see L{MemoryMessageStore.append}),
        so the expired messages are always a prefix.
        """
        count = 0
        for message in self.messages:
            if message.timestamp + self.ttl > now:
                break
            count += 1
        return count


@dataclass(frozen=True, slots=True)
class _Queued:
    """
    An offline push and the time it stops being worth delivering.
    """

    message: StoredMessage
    expires: float


@implementer(IMessageStore)
class MemoryMessageStore:
    """
    Keeps history and offline pushes in this process, lost at restart.

    Every method answers an already-fired Deferred: nothing here waits.
    """

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._offline: dict[str, deque[_Queued]] = {}
        self._sequence = 0
        self._seen: dict[str, float] = {}

    def _stream(self, name: str) -> _Stream:
        """
        The stream called C{name}, created with a new epoch the first time it
        is used - by a read as well as an append, so that the position a
        reader is given stays valid once messages arrive.
        """
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(epoch=secrets.token_hex(8))
        return stream

    def append(
        self, stream: str, payload: bytes, isBinary: bool, retention: Retention, now: float
    ) -> Deferred[StoredMessage]:
        """
        Keep C{payload} under the stream's next offset, then trim the stream
        to C{retention.maxCount}.

        The timestamp is C{now}, or the previous message's if the clock went
        back: expiry must only ever remove the oldest messages, or a reader
        could be served a history with a hole in it.
        """
        s = self._stream(stream)
        s.top += 1
        s.ttl = retention.ttl
        s.lastTimestamp = max(now, s.lastTimestamp)
        message = StoredMessage(s.top, payload, isBinary, s.lastTimestamp, s.epoch)
        s.messages.append(message)
        while len(s.messages) > retention.maxCount:
            s.messages.popleft()
        return succeed(message)

    def history(self, stream: str, since: Position | None, now: float) -> Deferred[History]:
        """
        The unexpired messages after C{since}; C{recovered} is whether they
        follow C{since} without a gap.

        C{since=None} asks only for the current position, which loses
        nothing, so it is C{recovered}.  A position of another epoch gets
        every kept message (all of them came after the history it knew was
        lost); one beyond the top gets none.
        """
        s = self._stream(stream)
        if since is None:
            return succeed(History(s.epoch, s.top, (), True))
        skip = s.expiredCount(now)
        kept = s.messages
        firstAvailable = kept[skip].offset if skip < len(kept) else s.top + 1
        sameEpoch = since.epoch == s.epoch
        recovered = sameEpoch and firstAvailable - 1 <= since.offset <= s.top
        if not sameEpoch:
            start = firstAvailable - 1
        else:
            start = min(max(since.offset, firstAvailable - 1), s.top)
        base = kept[0].offset if kept else s.top + 1
        messages = tuple(islice(kept, start + 1 - base, None))
        return succeed(History(s.epoch, s.top, messages, recovered))

    def queueOffline(
        self, uid: str, payload: bytes, isBinary: bool, limits: OfflineLimits, now: float
    ) -> Deferred[bool]:
        """
        Queue a push for C{uid} unless it already has C{limits.maxCount}
        unexpired pushes waiting.

        Offsets of queued pushes come from one counter for the whole store,
        as the SQLite store's do, so they only ever grow.
        """
        queue = self._offline.get(uid)
        if queue is None:
            queue = deque()
        if sum(1 for q in queue if q.expires > now) >= limits.maxCount:
            return succeed(False)
        self._sequence += 1
        queue.append(_Queued(StoredMessage(self._sequence, payload, isBinary, now), now + limits.ttl))
        self._offline[uid] = queue
        return succeed(True)

    def takeOffline(self, uid: str, now: float) -> Deferred[list[StoredMessage]]:
        """
        Empty C{uid}'s queue, answering the unexpired pushes oldest first.
        """
        queue = self._offline.pop(uid, ())
        return succeed([q.message for q in queue if q.expires > now])

    def markSeen(self, seen: Mapping[str, float]) -> Deferred[None]:
        """
        Remember each uid's latest connection.
        """
        for uid, now in seen.items():
            self._seen[uid] = max(now, self._seen.get(uid, now))
        return succeed(None)

    def wasSeen(self, uid: str, now: float) -> Deferred[bool]:
        """
        Whether C{uid} connected within L{SEEN_RETENTION}.
        """
        last = self._seen.get(uid)
        return succeed(last is not None and now - last < SEEN_RETENTION)

    def offlineUids(self, now: float) -> Deferred[set[str]]:
        """
        The uids with unexpired pushes waiting.
        """
        return succeed({uid for uid, queue in self._offline.items() if any(q.expires > now for q in queue)})

    def prune(self, now: float) -> Deferred[int]:
        """
        Drop expired history and offline pushes; streams themselves (their
        epoch and top) are kept, so positions in them stay meaningful.
        """
        dropped = 0
        for s in self._streams.values():
            for _ in range(s.expiredCount(now)):
                s.messages.popleft()
                dropped += 1
        for uid in list(self._offline):
            queue = self._offline[uid]
            live = deque(q for q in queue if q.expires > now)
            dropped += len(queue) - len(live)
            if live:
                self._offline[uid] = live
            else:
                del self._offline[uid]
        for uid in [u for u, last in self._seen.items() if now - last >= SEEN_RETENTION]:
            del self._seen[uid]
        return succeed(dropped)

    def close(self) -> Deferred[None]:
        """
        Nothing to release.
        """
        return succeed(None)
