"""
The Redis client's two hot paths, read through redis-py and read in bulk
(L{realtime.redisraw}), measured in one run against one fresh
C{redis-server} (a free port, nothing on disk):

- a push's pipelined C{PUBLISH} + C{HGETALL}, in pipelines of 200 pushes:
  redis-py's C{Pipeline.execute} against L{realtime.redisraw.RawPipeline},
  with redis-py's command methods, bare, and packed (the uid's parts
  made once, as the broker keeps them, joined with the payload);
- pub/sub messages of 100 bytes published in bursts of 5,000: redis-py's
  C{get_message} per message against L{realtime.broker.redisshards.OneRedis.read}.

It reports this process's CPU microseconds per push and per message (the
median of the rounds, alternated), which is what the server pays for them;
redis-server's own share is not in it.

    .venv/bin/python bench/redisclient.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PUSHES = 200
BURST = 5000


def _queuePushes(pipe: Any, way: str, heads: list[tuple[bytes, bytes]]) -> None:
    data = b"x" * 100
    for i in range(PUSHES):
        if way == "packed":
            head, counts = heads[i]
            pipe.packed(head, data, counts, 2)
        elif way == "bare":
            pipe.bare("PUBLISH", f"realtime:{{u:{i}}}:u", data)
            pipe.bare("HGETALL", f"realtime:{{u:{i}}}:conns")
        else:
            pipe.execute_command("PUBLISH", f"realtime:{{u:{i}}}:u", data)
            pipe.hgetall(f"realtime:{{u:{i}}}:conns")


async def pipelines(client: Any, way: str, batches: int = 50) -> float:
    """
    CPU microseconds per push through C{batches} pipelines, C{way}
    C{"pipeline"} (redis-py's), C{"raw"}, C{"bare"} or C{"packed"}.
    """
    from realtime.redisraw import RawPipeline, commandBytes, commandHead

    heads = [
        (commandHead("PUBLISH", f"realtime:{{u:{i}}}:u"), commandBytes("HGETALL", f"realtime:{{u:{i}}}:conns"))
        for i in range(PUSHES)
    ]

    started = time.process_time()
    for _ in range(batches):
        pipe = client.pipeline(transaction=False) if way == "pipeline" else RawPipeline(client, 10.0)
        _queuePushes(pipe, way, heads)
        await pipe.execute(raise_on_error=False)
    return 1e6 * (time.process_time() - started) / (batches * PUSHES)


async def messages(client: Any, publisher: Any, bulk: bool) -> float:
    """
    CPU microseconds per pub/sub message read from a burst of C{BURST}.
    """
    from realtime.broker.redisshards import OneRedis

    # before: redis-py's own pubsub, read one get_message at a time, as the
    # link read it until bulk reads; after: the link's reader
    shards = OneRedis(client)
    pubsub = shards._pubsub if bulk else client.pubsub()
    await pubsub.subscribe("bench")
    await pubsub.get_message(timeout=0.2)
    pipe = publisher.pipeline(transaction=False)
    for _ in range(BURST):
        pipe.publish("bench", b"x" * 100)
    await pipe.execute()
    await asyncio.sleep(0.3)
    got = 0
    started = time.process_time()
    while got < BURST:
        if bulk:
            got += len(await shards.read("redis", 1.0))
        elif await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0):
            got += 1
    spent = time.process_time() - started
    await pubsub.aclose()
    return 1e6 * spent / BURST


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, protocol=3)
    publisher = aioredis.Redis.from_url(url, protocol=3)
    ways = ("pipeline", "raw", "bare", "packed")
    results: dict[str, list[float]] = {k: [] for k in (*ways, "get_message", "drained")}
    for way in ways:  # warm every path up
        await pipelines(client, way, 5)
    for _ in range(rounds):
        for way in ways:
            results[way].append(await pipelines(client, way))
        results["get_message"].append(await messages(client, publisher, False))
        results["drained"].append(await messages(client, publisher, True))
    await client.aclose()
    await publisher.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from tests.redisserver import RedisServer

    server = RedisServer()
    try:
        results = asyncio.run(measure(server.url, args.rounds))
    finally:
        server.cleanup()
    m = {k: statistics.median(v) for k, v in results.items()}
    print(f"CPU us per push (PUBLISH + HGETALL, pipelines of {PUSHES}), median of {args.rounds} rounds:")
    print(f"  redis-py Pipeline.execute   {m['pipeline']:6.2f}")
    print(f"  RawPipeline                 {m['raw']:6.2f}   ({m['pipeline'] / m['raw']:.1f}x less)")
    print(f"  RawPipeline, bare commands  {m['bare']:6.2f}   ({m['raw'] / m['bare']:.1f}x less than with methods)")
    print(f"  RawPipeline, packed         {m['packed']:6.2f}   ({m['bare'] / m['packed']:.1f}x less than bare)")
    print(f"CPU us per pub/sub message (bursts of {BURST}):")
    print(f"  redis-py get_message        {m['get_message']:6.2f}")
    print(f"  OneRedis.read (drained)     {m['drained']:6.2f}   ({m['get_message'] / m['drained']:.1f}x less)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
