"""
Checking C{--store} and C{--broker}, and choosing the reactor Redis needs.

A Redis URL in either option means redis-py's asyncio client, which runs only
on Twisted's asyncio reactor.  twistd installs the default reactor when the
first module imports it, which is after the options are read, so the
options install the asyncio reactor themselves while none is installed yet
- as twistd's own C{--reactor} does, at the same moment - and the one
command a user types just works.  If another reactor is already running
(C{twistd -r epoll ...}, or an embedding program's), they refuse with the
command that works instead of hanging on a loop nobody runs.
"""

from __future__ import annotations

import sys
from typing import Mapping

from twisted.python import usage

from realtime.redisio import SCHEMES, checkURL

__all__ = ["checkStore", "checkBroker", "checkWorkers", "needsRedis", "useAsyncioReactor"]


def isRedis(spec: str) -> bool:
    return spec.startswith(SCHEMES)


def checkStore(spec: str) -> str:
    """
    C{--store}: C{memory}, C{sqlite:PATH} or a Redis URL.
    """
    if spec == "memory" or (spec.startswith("sqlite:") and len(spec) > len("sqlite:")):
        return spec
    if isRedis(spec):
        return _checkURL("store", spec)
    raise usage.UsageError(f"--store must be memory, sqlite:PATH or redis://HOST:PORT/DB, not {spec!r}")


def checkBroker(spec: str) -> str:
    """
    C{--broker}: C{memory} (this process only) or a Redis URL.
    """
    if spec == "memory":
        return spec
    if isRedis(spec):
        return _checkURL("broker", spec)
    raise usage.UsageError(f"--broker must be memory or redis://HOST:PORT/DB, not {spec!r}")


def _checkURL(option: str, spec: str) -> str:
    try:
        checkURL(spec)
    except ValueError as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    return spec


def checkWorkers(workers: int, broker: str, store: str, endpoints: Mapping[str, str]) -> None:
    """
    C{--workers} above 1 only with what every worker can share: a Redis
    broker (each worker is a process of its own, and without one a push
    taken by one worker never reaches the sessions another one holds), a
    store that is not one process's SQLite file, and listeners on TCP.

    A Unix socket cannot be shared: a worker adopting one sets the file's
    mode to Twisted's default (0666) as it starts, whatever C{mode=} said,
    and removes the file the others still serve as it stops.

    @param endpoints: listening option -> its endpoint description.
    """
    if workers <= 1:
        return
    if not isRedis(broker):
        raise usage.UsageError(
            f"--workers {workers} needs a broker every worker shares: each worker is a process of its own, so "
            "without one the sessions on one worker are invisible to the pushes another worker takes; "
            "add --broker redis://HOST:PORT/DB (or leave --workers at 1)"
        )
    if store.startswith("sqlite:"):
        raise usage.UsageError(
            f"--workers {workers} cannot share --store {store}: one process at a time may hold a SQLite store; "
            "use --store redis://HOST:PORT/DB (history and offline queues every worker shares), or --store memory"
        )
    for option, description in endpoints.items():
        if description.startswith("unix:") or (description.startswith("systemd:") and "domain=UNIX" in description):
            raise usage.UsageError(
                f"--workers {workers} cannot share --{option} {description}: a worker stopping would remove the "
                "Unix socket file the others serve; listen on tcp:PORT:interface=127.0.0.1 instead"
            )


def needsRedis(store: str, broker: str) -> bool:
    return isRedis(store) or isRedis(broker)


def useAsyncioReactor() -> None:
    """
    Make sure the reactor will be Twisted's asyncio reactor: install it if no
    reactor is installed yet, else refuse with the command that works.
    """
    if "twisted.internet.reactor" not in sys.modules:
        import asyncio

        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
        return
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise usage.UsageError(
            f"Redis needs Twisted's asyncio reactor, and this process already runs {type(reactor).__name__}: "
            "run twistd -r asyncio -n realtime ... (or leave -r out)"
        )
