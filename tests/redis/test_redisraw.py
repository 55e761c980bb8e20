"""
Tests for L{realtime.redisraw}: pipelines and pub/sub messages read in bulk
from hiredis answer exactly what redis-py's own paths answer, against a real
C{redis-server}.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from realtime.broker.redisshards import OneRedis
from realtime.redisio import loopOf, onLoop
from realtime.redisraw import RawPipeline, canPipelineRaw, commandBytes, commandHead, drainMessages
from tests.redisserver import RedisServer, sharedServer


def onTheLoop(test: Any) -> Any:
    """
    Run the coroutine method C{test} as a task of the reactor's asyncio
    loop, where redis-py's coroutines must run (trial awaits Deferreds).
    """

    def run(self: Any) -> Deferred[Any]:
        return onLoop(loopOf(reactor), test(self))

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def _fill(pipe: Any) -> None:
    """
    The commands the broker, presence and store queue, on a few keys.
    """
    pipe.hset("h", mapping={"a": 1, "b": "two"})
    pipe.hgetall("h")
    pipe.hgetall("missing")
    pipe.hmget("h", ["a", "zz"])
    pipe.hlen("h")
    pipe.hdel("h", "a")
    pipe.zadd("z", {"m1": 1.5, "m2": 3})
    pipe.zrangebyscore("z", "-inf", "+inf", withscores=True)
    pipe.zrange("z", 0, -1)
    pipe.zscore("z", "m2")
    pipe.zrem("z", "m1")
    pipe.zremrangebyscore("z", 0, 1)
    pipe.sadd("s", "x", "y")
    pipe.smembers("s")
    pipe.expire("s", 60)
    pipe.execute_command("PUBLISH", "nobody", b"data")
    pipe.incr("h")  # a reply error, in its place
    pipe.delete("h", "z", "s")


class RawPipelineTests(TestCase):
    def setUp(self) -> None:
        self.redis = sharedServer()
        self.redis.command("FLUSHALL")
        self.client = aioredis.Redis.from_url(self.redis.url, protocol=3)

    def tearDown(self) -> Deferred[None]:
        return onLoop(loopOf(reactor), self.client.aclose())

    @onTheLoop
    async def test_sameAnswersAsRedisPy(self) -> None:
        """
        Every kind of command answers what C{Pipeline.execute} answers for
        it, reply errors included (as the exception, in its place).
        """
        theirs = self.client.pipeline(transaction=False)
        _fill(theirs)
        expected = await theirs.execute(raise_on_error=False)
        self.redis.command("FLUSHALL")
        ours = RawPipeline(self.client, timeout=5.0)
        _fill(ours)
        self.assertEqual(len(ours), len(expected))
        answers = await ours.execute()
        self.assertIsInstance(answers[-2], ResponseError)
        self.assertEqual(str(answers[-2]), str(expected[-2]))
        self.assertEqual(answers[:-2] + answers[-1:], expected[:-2] + expected[-1:])

    @onTheLoop
    async def test_bareCommands(self) -> None:
        """
        A bare command answers what Redis sent, in its place among commands
        with their methods: RESP3's map as the C{dict} C{hgetall} answers,
        a reply error as the exception.
        """
        await self.client.hset("h", mapping={"node1": 2, "node2": 1})
        pipe = RawPipeline(self.client, timeout=5.0)
        pipe.bare("PUBLISH", "nobody", b"data")
        pipe.hgetall("h")
        pipe.bare("HGETALL", "h")
        pipe.bare("HGETALL", "missing")
        pipe.bare("INCR", "h")
        pipe.hlen("h")
        self.assertEqual(len(pipe), 6)
        answers = await pipe.execute()
        self.assertIsInstance(answers[4], ResponseError)
        held = {b"node1": b"2", b"node2": b"1"}
        self.assertEqual(answers[:4] + answers[5:], [0, held, held, {}, 2])

    @onTheLoop
    async def test_packedCommands(self) -> None:
        """
        Commands queued packed (a command's head and its last argument
        joined, as a node makes a push) run as those commands and answer in
        their place among the others, whatever bytes the last argument
        holds.
        """
        await self.client.hset("h", mapping={"node1": 2})
        pubsub = self.client.pubsub()
        await pubsub.subscribe("ch$an\r\nnel")
        await pubsub.get_message(timeout=1.0)
        self.addCleanup(lambda: onLoop(loopOf(reactor), pubsub.aclose()))
        payload = b"$3\r\n*1\x00\xff" * 10
        head = commandHead("PUBLISH", "ch$an\r\nnel")
        pipe = RawPipeline(self.client, timeout=5.0)
        pipe.bare("INCR", "n")
        pipe.packed(head, payload, commandBytes("HGETALL", "h"), 2)
        pipe.hlen("h")
        self.assertEqual(len(pipe), 4)
        self.assertEqual(await pipe.execute(), [1, 1, {b"node1": b"2"}, 1])
        message = await pubsub.get_message(timeout=1.0)
        self.assertEqual((message or {}).get("data"), payload)

    @onTheLoop
    async def test_scriptsAfterRedisLostThem(self) -> None:
        """
        A script runs even after Redis forgot every script (a restart, a
        failover): the pipeline loads it ahead of its commands.
        """
        script = self.client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        for expected in (5, 10):
            self.redis.command("SCRIPT", "FLUSH")
            pipe = RawPipeline(self.client, timeout=5.0)
            pipe.scripts.add(script)
            pipe.evalsha(script.sha, 1, "counter", 5)
            self.assertEqual(await pipe.execute(), [expected])

    @onTheLoop
    async def test_timeoutLeavesNoStaleReply(self) -> None:
        """
        A pipeline whose replies do not come in time fails, and its late
        replies are never read as the next pipeline's.
        """
        self.redis.command("SET", "late", "theirs")
        await self.client.ping()  # connected: the pipeline below waits for its replies
        self.redis.command("CLIENT", "PAUSE", "500", "ALL")
        slow = RawPipeline(self.client, timeout=0.2)
        slow.execute_command("GET", "late")
        with self.assertRaises((RedisTimeoutError, asyncio.TimeoutError, TimeoutError)):
            await slow.execute()
        await asyncio.sleep(0.5)
        self.redis.command("SET", "next", "mine")
        pipe = RawPipeline(self.client, timeout=5.0)
        pipe.get("next")
        self.assertEqual(await pipe.execute(), [b"mine"])

    @onTheLoop
    async def test_afterRestart(self) -> None:
        """
        The first pipeline after Redis restarted works: the pooled
        connection Redis closed is connected again, not read from.
        """
        server = RedisServer()
        self.addCleanup(server.cleanup)
        client = aioredis.Redis.from_url(server.url, protocol=3)
        pool = client.connection_pool
        for _ in range(3):
            pipe = RawPipeline(client, timeout=5.0)
            pipe.set("k", "v")
            self.assertEqual(await pipe.execute(), [True])
            server.stop()
            server.start()
            # until the reactor has seen Redis close the pooled connection
            # (an asyncio task: poll on the loop, with a deadline)
            for _ in range(200):
                if all(c._reader is None or c._reader.at_eof() for c in pool._available_connections):
                    break
                await asyncio.sleep(0.01)
        await client.aclose()

    @onTheLoop
    async def test_demotedMaster(self) -> None:
        """
        A Redis that became a replica (a failover) answers writes READONLY:
        the write fails in its place and the connection is dropped, so the
        next pipeline connects again (to the new master, through Sentinel)
        instead of writing to the replica for ever.
        """
        server = RedisServer()
        self.addCleanup(server.cleanup)
        client = aioredis.Redis.from_url(server.url, protocol=3)
        first = await client.client_id()
        server.command("REPLICAOF", "127.0.0.1", "1")
        pipe = RawPipeline(client, timeout=5.0)
        pipe.set("k", "v")
        pipe.get("k")
        [refused, read] = await pipe.execute()
        self.assertIsInstance(refused, ReadOnlyError)
        self.assertIsNone(read)
        self.assertNotEqual(await client.client_id(), first)
        await client.aclose()

    @onTheLoop
    async def test_connectingTimesOut(self) -> None:
        """
        A Redis that takes the connection and does not answer its handshake
        fails the pipeline in its time too.
        """
        self.redis.command("CLIENT", "PAUSE", "500", "ALL")
        pipe = RawPipeline(aioredis.Redis.from_url(self.redis.url, protocol=3), timeout=0.2)
        pipe.get("x")
        with self.assertRaises((RedisTimeoutError, asyncio.TimeoutError, TimeoutError)):
            await pipe.execute()
        await asyncio.sleep(0.5)

    @onTheLoop
    async def test_unreachable(self) -> None:
        """
        A Redis that cannot be reached fails the pipeline with redis-py's
        connection error, which the broker words as unavailable.
        """
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", protocol=3)
        pipe = RawPipeline(client, timeout=1.0)
        pipe.get("x")
        with self.assertRaises(Exception) as caught:  # noqa: B017 - redis-py's ConnectionError
            await pipe.execute()
        self.assertIn("Connect", type(caught.exception).__name__ + str(caught.exception))


class CanPipelineRawTests(SynchronousTestCase):
    def test_singleRedis(self) -> None:
        self.assertTrue(canPipelineRaw(aioredis.Redis.from_url("redis://127.0.0.1:1/0", protocol=3)))

    def test_notACluster(self) -> None:
        """
        A cluster's pipelines split by slot: redis-py's own pipeline runs them.
        """
        cluster = RedisCluster.__new__(RedisCluster)
        self.assertFalse(canPipelineRaw(cluster))

    def test_otherParser(self) -> None:
        from redis._parsers import _AsyncRESP3Parser

        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", protocol=3, parser_class=_AsyncRESP3Parser)
        self.assertFalse(canPipelineRaw(client))


class DrainTests(TestCase):
    def setUp(self) -> None:
        self.redis = sharedServer()
        self.client = aioredis.Redis.from_url(self.redis.url, protocol=3)

    def tearDown(self) -> Deferred[None]:
        return onLoop(loopOf(reactor), self.client.aclose())

    async def _published(self, *messages: tuple[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for channel, data in messages:
            pipe.publish(channel, data)
        await pipe.execute()
        # everything is in this side's socket buffer before the read
        await asyncio.sleep(0.2)

    async def _confirmed(self, shards: OneRedis, *channels: bytes) -> None:
        """
        Read until Redis confirmed the subscriptions to C{channels}: under
        load the answers can come later than any fixed wait, and one left
        unread would be heard ahead of the messages.
        """
        waiting = {("subscribe", channel, None) for channel in channels}
        deadline = asyncio.get_running_loop().time() + 10.0
        while waiting and asyncio.get_running_loop().time() < deadline:
            for heard in await shards.read("redis", 0.2):
                self.assertIn(heard, waiting)
                waiting.discard(heard)
        self.assertEqual(waiting, set())

    @onTheLoop
    async def test_burstInOneRead(self) -> None:
        """
        A burst Redis sent together is handed out by one read, in order.
        """
        shards = OneRedis(self.client)
        await shards.open("probe")
        await shards.subscribe({"ch"})
        await self._confirmed(shards, b"probe", b"ch")
        await self._published(*(("ch", b"%d" % i) for i in range(300)))
        heard = await shards.read("redis", 1.0)
        self.assertEqual(heard, [("message", b"ch", b"%d" % i) for i in range(300)])
        self.assertEqual(await shards.read("redis", 0.1), [])
        await shards.close()

    @onTheLoop
    async def test_subscriptionsConfirmed(self) -> None:
        """
        Redis's confirmations of subscriptions are handed out too, named
        by channel, whether first in a read or among the messages behind.
        """
        shards = OneRedis(self.client)
        await shards.open("probe")
        await shards.subscribe({"a"})
        await self._published(("a", b"1"))
        await shards.subscribe({"b"})
        await self._published(("a", b"2"))
        heard: list[Any] = []
        while len(heard) < 5:
            heard += await shards.read("redis", 1.0)
        self.assertEqual(
            heard,
            [("subscribe", b"probe", None), ("subscribe", b"a", None), ("message", b"a", b"1"),
             ("subscribe", b"b", None), ("message", b"a", b"2")],
        )
        await shards.close()

    @onTheLoop
    async def test_unsubscriptionAmongMessages(self) -> None:
        """
        An unsubscription's answer among the buffered messages goes through
        redis-py's bookkeeping: the channel is forgotten, the messages
        around it still come.
        """
        pubsub = self.client.pubsub()
        await pubsub.subscribe("a", "b")
        await self._published(("a", b"1"))
        await pubsub.unsubscribe("b")
        await self._published(("a", b"2"), ("a", b"3"))
        first = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        while first is None:
            first = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        self.assertEqual(first["data"], b"1")
        self.assertEqual(await drainMessages(pubsub), [("message", b"a", b"2"), ("message", b"a", b"3")])
        self.assertEqual(set(pubsub.channels), {b"a"})
        await pubsub.aclose()
