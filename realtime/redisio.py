"""
Redis from Twisted: redis-py's C{redis.asyncio} client run on Twisted's
asyncio reactor, its coroutines turned into Deferreds.

redis-py is the maintained Python client with Streams, Lua scripts (with the
NOSCRIPT fallback), explicit pipelines, Sentinel, Cluster and resubscription
after a reconnect; txredisapi has none of the last three.  It needs an asyncio
event loop, and the one loop that also runs Twisted is the asyncio reactor's,
so every Redis-backed part of the server needs that reactor: L{loopOf} refuses
any other with the command that fixes it, instead of hanging on a loop nobody
runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

__all__ = [
    "WrongReactor",
    "loopOf",
    "onLoop",
    "REACTOR_ADVICE",
    "clientFor",
    "isCluster",
    "SCHEMES",
    "Pipeliner",
    "firstError",
    "checkURL",
    "uidKey",
    "channelKey",
    "PubSubCommands",
    "CLASSIC",
    "SHARDED",
    "pubsubCommands",
]

#: the URL forms C{--store} and C{--broker} take
SCHEMES = ("redis://", "rediss://", "redis+sentinel://", "redis+cluster://", "rediss+cluster://")

_T = TypeVar("_T")

#: what to tell someone whose server runs on another reactor
REACTOR_ADVICE = "Redis needs Twisted's asyncio reactor: run twistd -r asyncio -n realtime ..."


class WrongReactor(RuntimeError):
    """
    The reactor has no asyncio event loop for redis-py to run on.
    """


def loopOf(reactor: Any) -> asyncio.AbstractEventLoop:
    """
    The asyncio event loop C{reactor} runs.

    @raise WrongReactor: C{reactor} is not Twisted's asyncio reactor.
    """
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    from realtime.websocket._autobahn.privates import asyncioLoopOf

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise WrongReactor(f"{REACTOR_ADVICE} (this one is {type(reactor).__name__})")
    return asyncioLoopOf(reactor)


def onLoop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    """
    Run C{coroutine} as a task of C{loop} and answer its result as a Deferred.

    The task is made on the reactor's own loop explicitly: C{ensure_future}
    would pick the thread's I{current} loop, which need not be the one the
    reactor runs, and the coroutine would then never start.  Cancelling the
    Deferred cancels the task.
    """
    return Deferred.fromFuture(loop.create_task(coroutine))


def uidKey(prefix: str, uid: str, suffix: str) -> str:
    """
    The name of a key (or pub/sub channel) of C{uid}'s.  Every name of one
    uid carries the same hash tag, C{{u:UID}}, so a script may touch them all
    on Redis Cluster: the store's, the presence's and the broker's alike.
    """
    return f"{prefix}:{{u:{uid}}}:{suffix}"


def channelKey(prefix: str, channel: str, suffix: str) -> str:
    """
    The name of a key (or pub/sub channel) of C{channel}'s, under the hash
    tag C{{ch:NAME}} (see L{uidKey}).
    """
    return f"{prefix}:{{ch:{channel}}}:{suffix}"


def checkURL(url: str) -> None:
    """
    Refuse C{url} unless L{clientFor} takes it (without connecting).

    @raise ValueError: saying which forms are taken.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not url.startswith(SCHEMES):
        raise ValueError(f"not a Redis URL: {url!r} (use one of {', '.join(s + '...' for s in SCHEMES)})")
    if scheme == "redis+sentinel":
        hosts, _, path = rest.partition("/")
        if not hosts or not path.partition("/")[0]:
            raise ValueError(f"{url!r}: a Sentinel URL is redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]")
    elif not rest.partition("/")[0]:
        raise ValueError(f"{url!r} names no host")


def clientFor(url: str, **options: Any) -> Any:
    """
    A C{redis.asyncio} client for C{url}, speaking RESP3, answering bytes:

      - C{redis://HOST:PORT/DB}, C{rediss://...} (TLS): one Redis;
      - C{redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]}: the master
        Sentinel names, found again after a failover;
      - C{redis+cluster://HOST:PORT} (C{rediss+cluster://} for TLS): a Redis
        Cluster, discovered from that node.

    Making a client opens no connection: the first command does.
    C{options} go to redis-py's client as they are (C{address_remap} for a
    cluster whose masters are reached through other addresses, say).

    @raise ValueError: for any other URL, naming the forms above.
    """
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel

    checkURL(url)
    scheme, _, rest = url.partition("://")
    if scheme in ("redis", "rediss"):
        return aioredis.Redis.from_url(url, protocol=3, decode_responses=False, **options)
    if scheme.endswith("+cluster"):
        return RedisCluster.from_url(f"{scheme.partition('+')[0]}://{rest}", protocol=3, decode_responses=False, **options)
    hosts, _, path = rest.partition("/")
    master, _, db = path.partition("/")
    addresses = [(h.rpartition(":")[0] or h, int(h.rpartition(":")[2] or 26379)) for h in hosts.split(",")]
    sentinel = Sentinel(addresses, protocol=3, decode_responses=False)
    return sentinel.master_for(master, db=int(db or 0), protocol=3, decode_responses=False, **options)


def isCluster(client: Any) -> bool:
    """
    Whether C{client} talks to a Redis Cluster, whose pipelines refuse
    C{EVALSHA} (redis-py sends each script's text with C{EVAL} there).
    """
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


@dataclass(frozen=True)
class PubSubCommands:
    """
    The pub/sub commands one client's messages travel by: C{PUBLISH} and
    C{SUBSCRIBE} on one Redis, C{SPUBLISH} and C{SSUBSCRIBE} on a Redis
    Cluster (see L{pubsubCommands}).  Scripts that publish take
    C{publish} as an argument (C{redis.call(ARGV[n], channel, data)}).
    """

    publish: str
    subscribe: str
    unsubscribe: str
    #: whether a channel lives on the shard of its slot (and a subscription
    #: to it is made on the master that owns the slot)
    sharded: bool


#: a single Redis (or Sentinel's master): classic pub/sub, which every
#: Redis version has
CLASSIC = PubSubCommands("PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", sharded=False)

#: a Redis Cluster: sharded pub/sub (Redis 7)
SHARDED = PubSubCommands("SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE", sharded=True)


def pubsubCommands(client: Any) -> PubSubCommands:
    """
    The one place that decides how C{client}'s messages travel.

    On a Redis Cluster every channel is sharded.  Classic C{PUBLISH} there
    is sent over the cluster bus to every node, replicas included, whoever
    subscribes; its answer counts only the subscribers of the node that took
    it (so "nobody heard it" could not be told from "nobody on this node");
    and redis-py pins a classic subscription to one node it does not move on
    a failover.  A sharded message stays on the shard that owns its
    channel's slot, where every subscriber of that channel is connected, so
    C{SPUBLISH} answers how many nodes took it; a uid's and a channel's
    Redis channels carry the hash tags of their keys, so a script may
    publish on them beside the keys it writes.  The cluster-wide channels
    are sharded too: the broadcast channel lives on one shard (its fan-out to
    the realtime nodes is one message per node, where classic would add one
    per cluster node), and each node probes every shard connection it holds
    on a channel of that shard (L{realtime.broker.redispubsub}).
    """
    return SHARDED if isCluster(client) else CLASSIC


#: one operation waiting for the next pipeline, as (queue, finish, done,
#: checked): C{queue} adds its commands and says how many, C{finish} turns
#: their answers into the result C{done} fires with; C{checked}: the
#: operation fails with the first command that failed, before C{finish}
#: sees the answers.  A tuple: one is made per push, and a class's
#: constructor costs seven times as much
_Operation = tuple[Callable[[Any], int], Callable[[list[Any]], Any], Deferred[Any], bool]


def firstError(answers: list[Any]) -> Exception | None:
    """
    The first of a pipeline's C{answers} that is an error (Redis refused
    that command), or None.
    """
    # a loop, not a generator: this runs once per push
    for answer in answers:
        if isinstance(answer, Exception):
            return answer
    return None


class Pipeliner:
    """
    Sends the operations asked for in one reactor turn - and any asked for
    while the previous pipeline is in flight - as one pipeline, one pipeline
    at a time.

    One pipeline at a time on one client is what keeps operations in the
    order they were asked for (several pipelines on a pool's connections
    could run in any order; on a cluster, a pipeline's commands for one slot
    stay in order on that slot's node), and it costs one round trip per
    burst instead of one per operation.  An operation whose command fails
    fails alone; a pipeline that cannot be sent fails all of its operations.

    @param maxBatch: the most operations one pipeline takes, so one huge
        burst does not hold Redis (or its first caller) for long.
    @param failing: what turns a failure into the one the operation fails
        with (how its owner words an unreachable Redis), applied here rather
        than as one more callback on every operation's Deferred.
    """

    def __init__(
        self, client: Any, reactor: Any, maxBatch: int = 500, failing: Callable[[Failure], Failure] = lambda f: f
    ) -> None:
        self._client = client
        self._failing = failing
        self._reactor = reactor
        self._loop = loopOf(reactor)
        self._cluster = isCluster(client)
        from realtime.redisraw import canPipelineRaw

        #: read the replies in bulk (L{realtime.redisraw}), or through
        #: redis-py's own pipeline (a cluster's, or without hiredis); raw
        #: pipelines also take C{bare()}, a command without its method
        self.raw = canPipelineRaw(client)
        self._timeout = float(client.connection_pool.connection_kwargs.get("socket_timeout") or 10.0) if self.raw else 0.0
        self._callbacks: dict[Any, Any] = {}
        self._maxBatch = maxBatch
        self._pending: list[_Operation] = []
        self.flushing = False
        self.closed = False

    def submit(
        self, queue: Callable[[Any], int], finish: Callable[[list[Any]], Any], checked: bool = True
    ) -> Deferred[Any]:
        """
        Ask for an operation; its Deferred fires with C{finish}'s result.

        @param checked: whether a command that failed fails the operation
            (its first error, as C{failing} words it); unchecked, C{finish}
            is given the errors among the answers and words them itself (a
            batch of pushes, each failing alone).
        """
        if self.closed:
            return fail(RuntimeError("the Redis client is closed"))
        done: Deferred[Any] = Deferred()
        self._pending.append((queue, finish, done, checked))
        if not self.flushing:
            self.flushing = True
            self._reactor.callLater(0, self._flush)
        return done

    def script(self, pipe: Any, script: Any, keys: list[str], args: list[Any]) -> int:
        """
        Queue C{script} (an C{AsyncScript}) on C{pipe}; answers 1, the
        number of commands queued.

        This is what C{AsyncScript.__call__} does for a pipeline, without its
        coroutine: the pipeline loads its scripts (C{SCRIPT LOAD} after a
        C{NOSCRIPT}) before it executes.  Cluster pipelines refuse
        C{EVALSHA}, so there the script's text goes with C{EVAL}.
        """
        if self._cluster:
            pipe.eval(script.script, len(keys), *keys, *args)
        else:
            pipe.scripts.add(script)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return 1

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
        """
        Run one coroutine of the client (outside the pipelines).
        """
        return onLoop(self._loop, coroutine)

    def _flush(self) -> None:
        batch, self._pending = self._pending[: self._maxBatch], self._pending[self._maxBatch :]
        if not batch:
            self.flushing = False
            return
        pipe = self._pipeline()
        counts = []
        queued = []
        for operation in batch:
            queue, _, done, _ = operation
            # an operation that cannot even be queued fails alone, and the
            # pipeliner goes on (it would otherwise stay "flushing" forever)
            try:
                counts.append(queue(pipe))
            except Exception:
                done.errback(Failure())
            else:
                queued.append(operation)
        batch = queued
        if not batch:
            self._reactor.callLater(0, self._flush)
            return
        self.run(pipe.execute(raise_on_error=False)).addCallbacks(
            self._answer, self._failBatch, callbackArgs=(batch, counts), errbackArgs=(batch,)
        ).addBoth(lambda _: self._flush())

    def _pipeline(self) -> Any:
        if self.raw:
            from realtime.redisraw import RawPipeline

            return RawPipeline(self._client, self._timeout, self._callbacks)
        return self._client.pipeline(transaction=False)

    def _answer(self, results: list[Any], batch: list[_Operation], counts: list[int]) -> None:
        start = 0
        for (_, finish, done, checked), count in zip(batch, counts, strict=True):
            answers, start = results[start : start + count], start + count
            if checked:
                error = firstError(answers)
                if error is not None:
                    done.errback(self._failing(Failure(error)))
                    continue
            try:
                result = finish(answers)
            except Exception:
                done.errback(Failure())
            else:
                done.callback(result)

    def _failBatch(self, reason: Failure, batch: list[_Operation]) -> None:
        reason = self._failing(reason)
        for _, _, done, _ in batch:
            done.errback(reason)

    def close(self) -> Deferred[None]:
        """
        Refuse new operations, answer the ones asked for, then close the
        client's connections.
        """
        self.closed = True
        drained: Deferred[None] = Deferred()

        def closeWhenIdle() -> None:
            if self.flushing:
                self._reactor.callLater(0.01, closeWhenIdle)
                return
            self.run(self._client.aclose()).chainDeferred(drained)

        closeWhenIdle()
        return drained
