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
from typing import Any, Coroutine, TypeVar

from twisted.internet.defer import Deferred

__all__ = ["WrongReactor", "loopOf", "onLoop", "REACTOR_ADVICE", "clientFor", "isCluster", "SCHEMES"]

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

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise WrongReactor(f"{REACTOR_ADVICE} (this one is {type(reactor).__name__})")
    loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop
    return loop


def onLoop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    """
    Run C{coroutine} as a task of C{loop} and answer its result as a Deferred.

    The task is made on the reactor's own loop explicitly: C{ensure_future}
    would pick the thread's I{current} loop, which need not be the one the
    reactor runs, and the coroutine would then never start.  Cancelling the
    Deferred cancels the task.
    """
    return Deferred.fromFuture(loop.create_task(coroutine))


def clientFor(url: str) -> Any:
    """
    A C{redis.asyncio} client for C{url}, speaking RESP3, answering bytes:

      - C{redis://HOST:PORT/DB}, C{rediss://...} (TLS): one Redis;
      - C{redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]}: the master
        Sentinel names, found again after a failover;
      - C{redis+cluster://HOST:PORT} (C{rediss+cluster://} for TLS): a Redis
        Cluster, discovered from that node.

    Making a client opens no connection: the first command does.

    @raise ValueError: for any other URL, naming the forms above.
    """
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel

    scheme, sep, rest = url.partition("://")
    if not sep or not url.startswith(SCHEMES):
        raise ValueError(f"not a Redis URL: {url!r} (use one of {', '.join(s + '...' for s in SCHEMES)})")
    if scheme in ("redis", "rediss"):
        return aioredis.Redis.from_url(url, protocol=3, decode_responses=False)
    if scheme.endswith("+cluster"):
        return RedisCluster.from_url(f"{scheme.partition('+')[0]}://{rest}", protocol=3, decode_responses=False)
    hosts, _, path = rest.partition("/")
    master, _, db = path.partition("/")
    if not hosts or not master:
        raise ValueError(f"{url!r}: a Sentinel URL is redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]")
    addresses = [(h.rpartition(":")[0] or h, int(h.rpartition(":")[2] or 26379)) for h in hosts.split(",")]
    sentinel = Sentinel(addresses, protocol=3, decode_responses=False)
    return sentinel.master_for(master, db=int(db or 0), protocol=3, decode_responses=False)


def isCluster(client: Any) -> bool:
    """
    Whether C{client} talks to a Redis Cluster, whose pipelines refuse
    C{EVALSHA} (redis-py sends each script's text with C{EVAL} there).
    """
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)
