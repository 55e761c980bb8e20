"""
CPU per channel publish on Redis, the two ways in one run: the channel
publisher's two steps (the Redis store's append, then the Redis broker's
publish) against the one script that appends and publishes (the broker
keeping history in the store, as C{--broker} and C{--store} on one Redis URL
wire it).  One node, one subscriber on it (each message comes back through
pub/sub and is written once), a real C{redis-server} on a free port.

    .venv/bin/python bench/channelpublish.py [--messages 5000] [--rounds 3]

Prints, per way, the server process's and redis-server's CPU microseconds
per publish (best of the rounds, the ways alternating), and their ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred, gatherResults  # noqa: E402

from realtime.broker.redis import RedisBroker  # noqa: E402
from realtime.core.namespaces import NamespaceRules  # noqa: E402
from realtime.core.registry import SessionRegistry  # noqa: E402
from realtime.core.subscription import Subscription  # noqa: E402
from realtime.delivery.fanout import Fanout  # noqa: E402
from realtime.push.router import ChannelPublisher  # noqa: E402
from realtime.redisio import clientFor  # noqa: E402
from realtime.store.redis import RedisMessageStore  # noqa: E402
from realtime.testing import FakeSession  # noqa: E402
from tests.redisserver import RedisServer, until  # noqa: E402

BURST = 100


def cpuOf(pid: int) -> float:
    """Seconds of CPU (user + system) process C{pid} used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(redis: RedisServer, atomic: bool, messages: int, channel: str) -> tuple[float, float]:
    registry = SessionRegistry()
    broker = RedisBroker(clientFor(redis.url), reactor, registry, Fanout(reactor))
    store = RedisMessageStore.fromURL(redis.url, reactor)
    if atomic:
        broker.keepHistoryIn(store)
    await broker.start()
    publisher = ChannelPublisher(reactor, broker, store, NamespaceRules())
    session = FakeSession("u")
    registry.add(session)
    subscription = Subscription(session, channel)
    registry.subscribe(subscription)
    subscription.release(0)
    await until(lambda: b":1" in redis.command("PUBSUB", "NUMSUB", f"realtime:{{ch:{channel}}}:pub"))
    if atomic:
        await until(lambda: broker._gaps is not None and broker._gaps.settled(channel))
    ours, theirs = time.process_time(), cpuOf(redis.process.pid)  # type: ignore[union-attr]
    for start in range(0, messages, BURST):
        await gatherResults([publisher.publish(channel, b"%d" % i) for i in range(start, min(start + BURST, messages))])
    await until(lambda: len(session.sent) == messages, timeout=120, step=0.01)
    ours, theirs = time.process_time() - ours, cpuOf(redis.process.pid) - theirs  # type: ignore[union-attr]
    await broker.stop()
    await store.close()
    return ours / messages * 1e6, theirs / messages * 1e6


async def main(messages: int, rounds: int) -> None:
    redis = RedisServer()
    try:
        best: dict[bool, tuple[float, float]] = {}
        for n in range(rounds):
            for atomic in (False, True):
                result = await measure(redis, atomic, messages, f"bench{n}{int(atomic)}")
                best[atomic] = min(best.get(atomic, result), result)
        for atomic, (ours, theirs) in best.items():
            print(
                f"{'one script' if atomic else 'two steps '}: server {ours:6.1f} us, redis-server {theirs:6.1f} us per publish"
            )
        (o2, t2), (o1, t1) = best[False], best[True]
        print(
            f"ratio one script / two steps: server {o1 / o2:.2f}, redis-server {t1 / t2:.2f}, both {(o1 + t1) / (o2 + t2):.2f}"
        )
    finally:
        redis.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    def run() -> None:
        ensureDeferred(main(arguments.messages, arguments.rounds)).addErrback(lambda f: f.printTraceback()).addBoth(
            lambda _: reactor.stop()
        )

    reactor.callWhenRunning(run)
    reactor.run()
