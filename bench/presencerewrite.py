"""
How long the reactor is held while a node rewrites its share of presence in
Redis (the periodic refresh, the repair after Redis lost data): a node
holding C{--uids} uids and C{--members} members of one channel, against a
real C{redis-server} on a free port.

    .venv/bin/python bench/presencerewrite.py [--uids 100000] [--members 20000]

prints the longest a 1 ms timer was late during the rewrite (the longest
reactor turn, to within that millisecond), and how long the rewrite took.
To compare two commits, run it in each tree (C{git worktree add /tmp/before
COMMIT}, this file copied in if it is older).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install()

from twisted.internet import reactor, task  # noqa: E402
from twisted.internet.defer import ensureDeferred, gatherResults  # noqa: E402

from realtime.broker.redispresence import RedisPresence  # noqa: E402
from realtime.redisio import clientFor  # noqa: E402
from tests.redisserver import RedisServer  # noqa: E402


class Lateness:
    """
    A timer every millisecond that remembers how late it ran at worst.
    """

    INTERVAL = 0.001

    def __init__(self) -> None:
        self.worst = 0.0
        self._last = time.perf_counter()
        self._loop = task.LoopingCall(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last - self.INTERVAL)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self._loop.start(self.INTERVAL, now=False)

    def stop(self) -> None:
        self._loop.stop()


async def main(uids: int, members: int) -> None:
    redis = RedisServer()
    try:
        presence = RedisPresence(clientFor(redis.url), reactor, "bench", refreshInterval=3600)
        await presence.start()
        # the node's state as its sessions made it, written in pieces
        for start in range(0, uids, 1000):
            await gatherResults([presence.connected(f"u{i}") for i in range(start, min(uids, start + 1000))])
        for start in range(0, members, 1000):
            ids = range(start, min(members, start + 1000))
            await gatherResults([presence.joined("big", f"s{i}", f"u{i}") for i in ids])
        redis.command("FLUSHALL")
        late = Lateness()
        late.start()
        began = time.perf_counter()
        await presence.refresh()
        took = time.perf_counter() - began
        late.stop()
        written = int(redis.command("DBSIZE").strip(b":\r\n"))
        print(
            f"{uids} uids, {members} members: longest reactor turn {late.worst * 1000:.1f} ms, "
            f"rewrite {took * 1000:.0f} ms, {written} keys written"
        )
        await presence.stop()
    finally:
        redis.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uids", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=20_000)
    arguments = parser.parse_args()

    def run() -> None:
        ensureDeferred(main(arguments.uids, arguments.members)).addErrback(
            lambda f: f.printTraceback(sys.stderr)
        ).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
