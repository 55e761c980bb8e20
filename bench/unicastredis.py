"""
CPU per unicast push through the Redis broker, one node in-process: the line
port's batch path (parsing, the pipeline to Redis, the answers), then each
push back through pub/sub to the uid's session here.  A real C{redis-server}
on a free port; the sessions and the line port's backend are in memory, so
no socket write to a client is counted.  Every push must be answered C{ok}
and delivered once.

    .venv/bin/python bench/unicastredis.py [--pushes 51200] [--rounds 5] [--uids 10000]

prints the best round's CPU microseconds per push, of this process and of
redis-server, and this process's median.

The suite's C{redis-unicast} group (C{run.py}) judges the target, over two
nodes against Node's peer; on a shared 2-core machine its ratios move by
15% between runs, and so do this script's times.  Instructions do not:
under callgrind the difference of two runs is a push's own count, the
setup's cancelling out, to within 3% (runs of one tree: 124.8k to 129.0k
instructions per push; how pub/sub messages group into reads still
depends on timing).  To compare two commits, run it in
each tree (C{git worktree add /tmp/before COMMIT}, this file copied in if
it is older), both at once on the two cores::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/a1.out \
        .venv/bin/python bench/unicastredis.py --rounds 1 --uids 1000 --pushes 2560
    # and again with --pushes 12800 into /tmp/a2.out; then per push:
    # (a2's "totals" - a1's) / 10240
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from bench.inprocess import pushBatches  # noqa: E402
from bench.servers import processCpuTimes  # noqa: E402
from realtime import wiring  # noqa: E402
from realtime.api.lineproto import LinePushFactory  # noqa: E402
from realtime.broker.redis import RedisBroker  # noqa: E402
from realtime.core.namespaces import NamespaceRules  # noqa: E402
from realtime.core.registry import SessionRegistry  # noqa: E402
from realtime.delivery.fanout import Fanout  # noqa: E402
from realtime.delivery.writer import TurnWriter  # noqa: E402
from realtime.ops.gctuning import THRESHOLDS  # noqa: E402
from realtime.ops.instrument import InstrumentedPublisher, LatencyHistogram  # noqa: E402
from realtime.redisio import clientFor  # noqa: E402
from realtime.testing import FakeSession  # noqa: E402
from tests.redisserver import RedisServer, until  # noqa: E402

#: pushes per read of the line port, as the load generator's window sends them
BATCH = 256


class Backend(StringTransport):
    """
    The line port's backend: fires C{answered} once it has C{expected} answers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        self.expected = 0
        self.answered: Deferred[None] = Deferred()

    def write(self, data: bytes) -> None:
        self.answers += data.count(b"\n")
        if self.answers >= self.expected and not self.answered.called:
            self.answered.callback(None)

    def expect(self, more: int) -> Deferred[None]:
        self.expected += more
        self.answered = Deferred()
        return self.answered


def cpu(pid: int) -> float:
    return sum(processCpuTimes(pid))


async def measure(redis: RedisServer, pushes: int, uids: int) -> tuple[float, float]:
    registry, fanout = SessionRegistry(), Fanout(reactor)
    broker = RedisBroker(clientFor(redis.url), reactor, registry, fanout)
    await broker.start()
    router = wiring.buildRouter(reactor, registry, broker, fanout, None, NamespaceRules(), None)
    sessions = [FakeSession(f"u{i}") for i in range(uids)]
    for session in sessions:
        registry.add(session)
    # every uid counted in Redis, so every push is answered ok (the broker
    # counts a session once its uid's channel is subscribed)
    while set(await gatherResults([broker.connectionCount(s.uid) for s in sessions])) != {1}:
        pass
    line = LinePushFactory(
        InstrumentedPublisher(router, "line", LatencyHistogram(), reactor), 65536, TurnWriter(reactor), batched=True
    ).buildProtocol(None)
    backend = Backend()
    line.makeConnection(backend)
    batches = pushBatches(uids, pushes // BATCH, BATCH)
    server = redis.process.pid  # type: ignore[union-attr]
    ours, theirs = time.process_time(), cpu(server)
    for batch in batches:
        answered = backend.expect(BATCH)
        line.dataReceived(batch)
        await answered
    total = BATCH * len(batches)
    await until(lambda: fanout.delivered >= total, timeout=120, step=0.01)
    ours, theirs = time.process_time() - ours, cpu(server) - theirs
    assert line.factory.delivered == total == sum(len(s.sent) for s in sessions), (line.factory.delivered, total)
    for session in sessions:
        registry.discard(session)
    await broker.stop()
    return ours / total * 1e6, theirs / total * 1e6


async def main(pushes: int, rounds: int, uids: int) -> None:
    redis = RedisServer()
    try:
        results = []
        for _ in range(rounds):
            redis.command("FLUSHALL")
            results.append(await measure(redis, pushes, uids))
        ours, theirs = min(results)
        median = statistics.median(r[0] for r in results)
        print(f"CPU us per push: server {ours:.2f} (median {median:.2f}), redis-server {theirs:.2f}")
    finally:
        redis.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=51200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uids", type=int, default=10_000, help="sessions, one per uid")
    arguments = parser.parse_args()
    # the collector as twistd realtime sets it (realtime.ops.gctuning)
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)

    def run() -> None:
        ensureDeferred(main(arguments.pushes, arguments.rounds, arguments.uids)).addErrback(
            lambda f: f.printTraceback(sys.stderr)
        ).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
