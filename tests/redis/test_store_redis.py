"""
Tests for L{realtime.store.redis}: the store contract every store meets,
against a real C{redis-server}, and what only a shared store must do.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from realtime.store.redis import Keys, RedisMessageStore
from realtime.values import Position
from tests.redisserver import sharedCluster, sharedServer
from tests.store_contract import KEEP, LIMITS, T0, MessageStoreContractMixin


class RedisStoreTestCase(TestCase):
    def setUp(self) -> None:
        self.redis = sharedServer()
        self.redis.command("FLUSHALL")

    def makeStore(self, **kwargs: Any) -> RedisMessageStore:
        store = RedisMessageStore.fromURL(self.redis.url, reactor, **kwargs)
        self.addCleanup(store.close)
        return store


class RedisMessageStoreContractTests(MessageStoreContractMixin, RedisStoreTestCase):
    """
    The Redis store answers as the memory store does.
    """

    makeStore = RedisStoreTestCase.makeStore


class SharedStoreTests(RedisStoreTestCase):
    """
    Two stores on one Redis are one store: what makes it a cluster's.
    """

    async def test_resumeOnAnotherNode(self) -> None:
        """
        A position given by one node's store is served by another's, with
        the same epoch and offsets.
        """
        first, second = self.makeStore(), self.makeStore()
        appended = [await first.append("news", b"%d" % i, False, KEEP, T0) for i in range(3)]
        history = await second.history("news", None, T0)
        self.assertEqual((history.epoch, history.offset), (appended[0].epoch, 3))
        more = await second.append("news", b"3", False, KEEP, T0)
        self.assertEqual(more.offset, 4)
        fromFirst = await first.history("news", Position(history.epoch, 3), T0)
        self.assertEqual((fromFirst.offset, [m.payload for m in fromFirst.messages], fromFirst.recovered), (4, [b"3"], True))

    async def test_offlineWaitsForAnyNode(self) -> None:
        """
        A push queued by one node is taken by another.
        """
        first, second = self.makeStore(), self.makeStore()
        self.assertTrue(await first.queueOffline("u1", b"hello", False, LIMITS, T0))
        self.assertEqual(await second.offlineUids(T0), {"u1"})
        self.assertEqual([m.payload for m in await second.takeOffline("u1", T0)], [b"hello"])
        self.assertEqual(await first.takeOffline("u1", T0), [])

    async def test_lostMetaIsANewEpoch(self) -> None:
        """
        When a stream's meta is lost (expired, or a Redis failed over without
        it), the stream starts a new epoch, so an old position is told it
        lost messages instead of being served offsets that mean new ones.
        """
        store = self.makeStore()
        old = await store.append("news", b"a", False, KEEP, T0)
        self.redis.command("DEL", Keys().meta("news"))
        new = await store.append("news", b"b", False, KEEP, T0)
        self.assertNotEqual(new.epoch, old.epoch)
        self.assertEqual(new.offset, 1)

    async def test_orderedUnderLoad(self) -> None:
        """
        Appends asked for in one turn, more than one pipeline holds, get
        offsets in the order they were asked for.
        """
        store = self.makeStore(maxBatch=7)
        pending = [store.append("news", b"%d" % i, False, KEEP, T0) for i in range(50)]
        results = [await d for d in pending]
        self.assertEqual([(m.offset, m.payload) for m in results], [(i + 1, b"%d" % i) for i in range(50)])

    async def test_keysShareAHashTag(self) -> None:
        """
        A stream's keys, and a uid's, hash to one Redis Cluster slot.
        """
        keys = Keys()
        self.assertEqual(keys.meta("a:b{c}").split("}")[0], keys.stream("a:b{c}").split("}")[0])
        self.assertEqual(keys.queue("u{1"), keys.sequence("u{1").replace(":seq", ":offline"))


class RedisClusterStoreContractTests(MessageStoreContractMixin, TestCase):
    """
    On a Redis Cluster of three masters the store answers the same: each
    script's keys share a hash tag, so each runs on one slot.
    """

    def setUp(self) -> None:
        self.cluster = sharedCluster()
        self.cluster.flush()

    def makeStore(self) -> RedisMessageStore:
        store = RedisMessageStore.fromURL(self.cluster.url, reactor)
        self.addCleanup(store.close)
        return store

    async def test_streamsSpreadOverMasters(self) -> None:
        """
        Streams land on different masters, and each keeps its order.
        """
        store = self.makeStore()
        for i in range(20):
            for name in ("a", "b", "c", "d"):
                await store.append(name, b"%d" % i, False, KEEP, T0)
        for name in ("a", "b", "c", "d"):
            history = await store.history(name, Position((await store.history(name, None, T0)).epoch, 0), T0)
            self.assertEqual([m.payload for m in history.messages], [b"%d" % i for i in range(20)])
        holders = [n for n in self.cluster.nodes if n.command("DBSIZE") != b":0\r\n"]
        self.assertGreater(len(holders), 1)
