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

__all__ = ["WrongReactor", "loopOf", "onLoop", "REACTOR_ADVICE"]

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
