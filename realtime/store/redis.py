"""
The message store in Redis (C{--store redis://...}): channel history in
Redis Streams and offline queues in lists, shared by every node of a cluster,
so a client resumes from its position whichever node it reconnects to, and an
offline uid's pushes wait for it wherever it comes back.

Operations go to Redis through one L{realtime.redisio.Pipeliner}: a burst
costs one round trip, the way the SQLite store's burst costs one commit, and
appends to a stream stay in the order they were asked for.  Each
operation that must be atomic is one Lua script (L{realtime.store.redisscripts}).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from redis.commands.core import AsyncScript
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.logger import Logger
from zope.interface import implementer

from realtime.interfaces import SEEN_RETENTION, IMessageStore
from realtime.redisio import Pipeliner, channelKey, clientFor, uidKey
from realtime.store import redisscripts
from realtime.values import History, OfflineLimits, Position, Retention, StoredMessage

__all__ = ["RedisMessageStore", "Keys", "Publication"]

#: how long a stream's epoch and top outlive its last append, in seconds: as
#: long as a uid stays known, so a client back after a month of silence is
#: told its position's epoch is gone rather than served a reused offset
KEEP_META = int(SEEN_RETENTION)


@dataclass(frozen=True, slots=True)
class Keys:
    """
    The names of the store's keys, under one prefix so that several servers
    can share a Redis without sharing data.

    A stream's keys and a uid's keys share a hash tag, so the script that
    touches them runs on one Redis Cluster slot.
    """

    prefix: str = "realtime"

    def meta(self, stream: str) -> str:
        return channelKey(self.prefix, stream, "meta")

    def stream(self, stream: str) -> str:
        return channelKey(self.prefix, stream, "stream")

    def queue(self, uid: str) -> str:
        return uidKey(self.prefix, uid, "offline")

    def sequence(self, uid: str) -> str:
        return uidKey(self.prefix, uid, "seq")

    @property
    def streams(self) -> str:
        """The set of stream names, walked by pruning."""
        return f"{self.prefix}:streams"

    @property
    def waiting(self) -> str:
        """uid -> when its newest queued push expires."""
        return f"{self.prefix}:offline-uids"

    @property
    def seen(self) -> str:
        """uid -> when it last connected."""
        return f"{self.prefix}:seen"


@dataclass(frozen=True, slots=True)
class Publication:
    """
    How L{RedisMessageStore.appendPublishing} publishes what it appends:
    the broker's choices (L{realtime.broker.redis.RedisBroker.publishStored}),
    so that the store knows no channel name and no message format.

    @ivar command: C{PUBLISH}, or C{SPUBLISH} for sharded pub/sub (the broker's L{realtime.redisio.pubsubCommands}).
    @ivar channel: the Redis channel to publish on.
    @ivar members: the key whose C{HLEN} is the answer's count.
    @ivar before: the message's header before "OFFSET EPOCH".
    @ivar after: and after it, before the payload.
    """

    command: str
    channel: str
    members: str
    before: bytes
    after: bytes


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: float) -> str:
    """A float as Python writes it, which Lua reads back exactly (C{tonumber})."""
    return repr(float(value))


def _entryMessage(entry: Sequence[Any], epoch: str) -> StoredMessage:
    """A Stream entry (C{[id, [field, value, ...]]}) as the message it keeps."""
    entryId, flat = entry
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return StoredMessage(
        int(_text(entryId).partition("-")[0]),
        bytes(fields[b"p"]),
        fields[b"b"] == b"1",
        float(fields[b"t"]),
        epoch,
    )


def _queuedMessage(entry: bytes) -> tuple[StoredMessage, float]:
    """An offline entry as its message and when it expires."""
    offset, expires, stamp, binary, payload = entry.split(b":", 4)
    return StoredMessage(int(offset), payload, binary == b"1", float(stamp)), float(expires)


@implementer(IMessageStore)
class RedisMessageStore:
    """
    An L{IMessageStore} in Redis, for a server of several nodes.

    @param client: a C{redis.asyncio} client (C{Redis} or C{RedisCluster})
        made with C{decode_responses=False}; the store closes it.
    @param reactor: Twisted's asyncio reactor (L{realtime.redisio.loopOf}).
    @param maxBatch: the most operations one pipeline takes.
    """

    log = Logger()

    def __init__(self, client: Any, reactor: Any, *, keys: Keys = Keys(), maxBatch: int = 500) -> None:
        self._pipeliner = Pipeliner(client, reactor, maxBatch)
        self._submit = self._pipeliner.submit
        self._keys = keys
        self._scripts = {
            name: AsyncScript(client, getattr(redisscripts, name))
            for name in ("APPEND", "APPEND_PUBLISH", "HISTORY", "PRUNE_STREAM", "QUEUE_OFFLINE", "TAKE_OFFLINE", "PRUNE_QUEUE")
        }

    @classmethod
    def fromURL(cls, url: str, reactor: Any, **kwargs: Any) -> RedisMessageStore:
        """
        A store on the Redis at C{url}, in any form
        L{realtime.redisio.clientFor} takes.
        """
        return cls(clientFor(url), reactor, **kwargs)

    def _script(self, name: str, pipe: Any, keys: list[str], args: list[Any]) -> int:
        return self._pipeliner.script(pipe, self._scripts[name], keys, args)

    # IMessageStore

    def append(
        self, stream: str, payload: bytes, isBinary: bool, retention: Retention, now: float
    ) -> Deferred[StoredMessage]:
        """
        Keep C{payload} under the stream's next offset: one script gives the
        offset, stamps it (never earlier than the previous message), trims
        the stream to C{retention.maxCount} and refreshes its expiry.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            return fail(TypeError(f"payload must be bytes, not {type(payload).__name__}"))
        return self._append(stream, bytes(payload), isBinary, retention, now, "APPEND", [], []).addCallback(
            lambda answer: answer[0]
        )

    def appendPublishing(
        self, stream: str, payload: bytes, retention: Retention, now: float, publication: Publication
    ) -> Deferred[tuple[StoredMessage, int, int]]:
        """
        L{append} a text message and publish it in the same script, so that
        messages reach pub/sub in offset order even when several nodes
        publish to one stream (two steps would let another node's message
        overtake between them).

        @return: a Deferred firing with the stored message, how many
            subscribers (nodes) Redis published it to, and the C{HLEN} of
            C{publication.members}.
        """
        scriptKeys = [publication.channel, publication.members]
        args = [publication.command, publication.before, publication.after]
        return self._append(stream, payload, False, retention, now, "APPEND_PUBLISH", scriptKeys, args)

    def _append(
        self,
        stream: str,
        payload: bytes,
        isBinary: bool,
        retention: Retention,
        now: float,
        script: str,
        moreKeys: list[str],
        moreArgs: list[Any],
    ) -> Deferred[tuple[StoredMessage, int, int]]:
        keys = self._keys
        args = [
            secrets.token_hex(8), payload, b"1" if isBinary else b"0", _number(now),
            retention.maxCount, _number(retention.ttl), KEEP_META, *moreArgs,
        ]

        def queue(pipe: Any) -> int:
            self._script(script, pipe, [keys.meta(stream), keys.stream(stream), *moreKeys], args)
            pipe.sadd(keys.streams, stream)
            return 2

        def finish(answers: list[Any]) -> tuple[StoredMessage, int, int]:
            offset, epoch, stamp, *counts = answers[0]
            receivers, members = (int(counts[0]), int(counts[1])) if counts else (0, 0)
            return StoredMessage(int(offset), payload, isBinary, float(stamp), _text(epoch)), receivers, members

        return self._submit(queue, finish)

    def positions(self, streams: Sequence[str]) -> Deferred[dict[str, Position | None]]:
        """
        Each stream's epoch and top offset, in one pipeline, C{None} for a
        stream without a meta (never written, or lost): read, never made,
        for the broker's periodic check that no message was missed
        (L{realtime.broker.redisgaps}).
        """
        keys = self._keys

        def queue(pipe: Any) -> int:
            for stream in streams:
                pipe.hmget(keys.meta(stream), "epoch", "top")
            return len(streams)

        def finish(answers: list[Any]) -> dict[str, Position | None]:
            return {
                stream: None if epoch is None else Position(_text(epoch), int(top or 0))
                for stream, (epoch, top) in zip(streams, answers, strict=True)
            }

        if not streams:
            return succeed({})
        return self._submit(queue, finish)

    def history(self, stream: str, since: Position | None, now: float) -> Deferred[History]:
        """
        What the stream holds after C{since}, with C{recovered} decided as
        the memory store decides it (the reference,
        L{realtime.store.memory.MemoryMessageStore.history}).
        """
        keys = self._keys
        args = [secrets.token_hex(8), _number(now), since.epoch if since else "", since.offset if since else ""]

        def queue(pipe: Any) -> int:
            self._script("HISTORY", pipe, [keys.meta(stream), keys.stream(stream)], args)
            pipe.sadd(keys.streams, stream)
            return 2

        def finish(answers: list[Any]) -> History:
            rawEpoch, top, first, entries = answers[0]
            epoch, top = _text(rawEpoch), int(top)
            if since is None:
                return History(epoch, top, (), True)
            recovered = since.epoch == epoch and int(first) - 1 <= since.offset <= top
            return History(epoch, top, tuple(_entryMessage(e, epoch) for e in entries), recovered)

        return self._submit(queue, finish)

    def queueOffline(
        self, uid: str, payload: bytes, isBinary: bool, limits: OfflineLimits, now: float
    ) -> Deferred[bool]:
        """
        Queue a push for C{uid} unless it has C{limits.maxCount} unexpired
        pushes waiting, and note in the shared index when it expires.
        """
        keys = self._keys
        expires = now + limits.ttl
        args = [_number(now), limits.maxCount, _number(expires), _number(now), b"1" if isBinary else b"0", bytes(payload)]

        def queue(pipe: Any) -> int:
            self._script("QUEUE_OFFLINE", pipe, [keys.queue(uid), keys.sequence(uid)], args)
            pipe.zadd(keys.waiting, {uid: expires}, gt=True)
            return 2

        return self._submit(queue, lambda answers: bool(answers[0]))

    def takeOffline(self, uid: str, now: float) -> Deferred[list[StoredMessage]]:
        """
        Empty C{uid}'s queue, answering its unexpired pushes oldest first.
        """
        keys = self._keys

        def queue(pipe: Any) -> int:
            self._script("TAKE_OFFLINE", pipe, [keys.queue(uid)], [])
            pipe.zrem(keys.waiting, uid)
            return 2

        def finish(answers: list[Any]) -> list[StoredMessage]:
            taken = (_queuedMessage(entry) for entry in answers[0])
            return [message for message, expires in taken if expires > now]

        return self._submit(queue, finish)

    def markSeen(self, seen: Mapping[str, float]) -> Deferred[None]:
        """
        Remember each uid's latest connection (a later one never goes back).
        """
        if not seen:
            return succeed(None)
        mapping = dict(seen)

        def queue(pipe: Any) -> int:
            pipe.zadd(self._keys.seen, mapping, gt=True)
            return 1

        return self._submit(queue, lambda answers: None)

    def wasSeen(self, uid: str, now: float) -> Deferred[bool]:
        """
        Whether C{uid} connected within L{SEEN_RETENTION}.
        """

        def queue(pipe: Any) -> int:
            pipe.zscore(self._keys.seen, uid)
            return 1

        def finish(answers: list[Any]) -> bool:
            return answers[0] is not None and now - float(answers[0]) < SEEN_RETENTION

        return self._submit(queue, finish)

    def offlineUids(self, now: float) -> Deferred[set[str]]:
        """
        The uids whose newest queued push has not expired.
        """

        def queue(pipe: Any) -> int:
            pipe.zrangebyscore(self._keys.waiting, f"({_number(now)}", "+inf")
            return 1

        return self._submit(queue, lambda answers: {_text(uid) for uid in answers[0]})

    def prune(self, now: float) -> Deferred[int]:
        """
        Drop expired history and offline pushes, and uids not seen within
        L{SEEN_RETENTION}; each stream and each queue is one script, in
        pipelines of L{maxBatch}, so Redis is never held long by one call.
        """
        keys = self._keys

        def listed(answers: list[Any]) -> tuple[list[str], list[str]]:
            streams, uids = answers
            return [_text(s) for s in streams], [_text(u) for u in uids]

        def queueLists(pipe: Any) -> int:
            pipe.smembers(keys.streams)
            pipe.zrange(keys.waiting, 0, -1)
            return 2

        def pruneEach(lists: tuple[list[str], list[str]]) -> Deferred[list[int]]:
            streams, uids = lists
            drops = [self._pruneOne("PRUNE_STREAM", [keys.meta(s), keys.stream(s)], now) for s in streams]
            drops += [self._pruneOne("PRUNE_QUEUE", [keys.queue(u)], now) for u in uids]
            return gatherResults(drops, consumeErrors=True)

        def forget(dropped: list[int]) -> Deferred[int]:
            def queue(pipe: Any) -> int:
                pipe.zremrangebyscore(keys.waiting, "-inf", _number(now))
                pipe.zremrangebyscore(keys.seen, "-inf", _number(now - SEEN_RETENTION))
                return 2

            return self._submit(queue, lambda answers: sum(dropped))

        return self._submit(queueLists, listed).addCallback(pruneEach).addCallback(forget)

    def _pruneOne(self, script: str, scriptKeys: list[str], now: float) -> Deferred[int]:
        def queue(pipe: Any) -> int:
            return self._script(script, pipe, scriptKeys, [_number(now)])

        return self._submit(queue, lambda answers: int(answers[0]))

    def close(self) -> Deferred[None]:
        """
        Answer what was asked for, then close the connections.
        """
        return self._pipeliner.close()
