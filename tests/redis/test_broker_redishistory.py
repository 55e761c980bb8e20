"""
Tests for the Redis broker keeping channel history in the Redis store
(L{realtime.broker.redis.RedisBroker.keepHistoryIn}) and for
L{realtime.broker.redisgaps}: one script appends and publishes, so every
node delivers a channel's messages in offset order whoever published them,
and what pub/sub loses is read back from the history, against a real
C{redis-server}.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from realtime.broker.memory import MemoryBroker
from realtime.broker.redis import RedisBroker
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.core.registry import SessionRegistry
from realtime.core.subscription import Subscription
from realtime.delivery.fanout import Fanout
from realtime.interfaces import IBroker, IHistoryBroker
from realtime.push.router import ChannelPublisher
from realtime.redisio import clientFor, loopOf, onLoop
from realtime.store.health import MonitoredStore, StoreUnavailable
from realtime.store.memory import MemoryMessageStore
from realtime.store.redis import RedisMessageStore
from realtime.testing import FakeSession
from realtime.values import Retention
from realtime.wiring import shareHistory
from tests.fakes import GatedStore, PassingSubscription
from tests.redisserver import RedisServer, sharedCluster, until

KEEP = Retention(1000, 600.0)
RULES = NamespaceRules([parseNamespaceSpec("quiet:*:history=0"), parseNamespaceSpec("*:history=1000")])


def offsets(session: FakeSession) -> list[int]:
    """The offsets of the channel messages C{session} received, in order."""
    return [json.loads(text)["offset"] for text in session.texts if json.loads(text).get("type") == "message"]


class Node:
    """
    One node: a registry, a Redis broker, a Redis store (the broker keeping
    history in it unless C{atomic=False}) and the channel publisher.
    """

    def __init__(self, test: TestCase, url: str, *, atomic: bool = True) -> None:
        self.registry = SessionRegistry()
        self.client = clientFor(url)
        self.broker = RedisBroker(self.client, reactor, self.registry, Fanout(reactor))
        self.store = RedisMessageStore.fromURL(url, reactor)
        self.monitored = MonitoredStore(self.store)
        if atomic:
            self.broker.keepHistoryIn(self.store, self.monitored.watch, lambda c: RULES.match(c).history > 0, 0.2)
        self.gated = GatedStore(self.monitored)
        self.gated.gated = False
        self.publisher = ChannelPublisher(reactor, self.broker, self.gated, RULES)
        test.addCleanup(self.close)

    async def close(self) -> None:
        await self.broker.stop()
        await self.store.close()
        await onLoop(loopOf(reactor), self.client.aclose())

    def subscriber(self, channel: str, uid: str = "u") -> FakeSession:
        session = FakeSession(uid)
        self.registry.add(session)
        self.registry.subscribe(PassingSubscription(session, channel))
        return session


class HistoryBrokerTests(TestCase):
    """
    Nodes on a single Redis of the test's own (one test stops it).
    """

    def setUp(self) -> None:
        self.redis: Any = RedisServer()
        self.addCleanup(self.redis.cleanup)

    def command(self, key: str, *words: str) -> bytes:
        """C{words} with C{key} second, on the server that holds C{key}."""
        return bytes(self.redis.ownerOf(key).command(words[0], key, *words[1:]))

    async def nodes(self, count: int = 2, **kwargs: Any) -> list[Node]:
        nodes = [Node(self, self.redis.url, **kwargs) for _ in range(count)]
        for node in nodes:
            await node.broker.start()
        return nodes

    def subscribedTo(self, name: str, nodes: int) -> bool:
        return bool(self.redis.subscribers(name)[name] == nodes)

    async def subscribers(self, nodes: list[Node], channel: str = "room") -> list[FakeSession]:
        sessions = [node.subscriber(channel) for node in nodes]
        await until(lambda: self.subscribedTo(f"realtime:{{ch:{channel}}}:pub", len(nodes)))
        # the starting positions are read
        await until(lambda: all(n.broker._gaps is None or n.broker._gaps.settled(channel) for n in nodes))
        return sessions

    async def test_interfaces(self) -> None:
        """
        Keeping history in the store makes the broker an L{IHistoryBroker};
        without it, it is an L{IBroker} only.
        """
        (node,) = await self.nodes(1)
        self.assertTrue(verifyObject(IHistoryBroker, node.broker))
        (plain,) = await self.nodes(1, atomic=False)
        self.assertTrue(verifyObject(IBroker, plain.broker))
        self.assertFalse(IHistoryBroker.providedBy(plain.broker))

    async def test_oneScript(self) -> None:
        """
        A channel message is appended and published in one step: it is in
        the stream with its offset, the subscribers on every node get the
        client's frame of it (made by the receiving node), and the answer
        counts the channel's subscriptions cluster-wide.
        """
        a, b = await self.nodes()
        here, there = await self.subscribers([a, b])
        await until(lambda: int(self.command("realtime:{ch:room}:members", "HLEN")[1:-2]) == 2)
        result = await a.publisher.publish("room", b'{"n":1}')
        self.assertEqual((result.delivered, result.offset), (2, 1))
        expected = json.dumps(
            {"type": "message", "channel": "room", "offset": 1, "epoch": result.epoch, "data": {"n": 1}}
        )
        await until(lambda: here.texts == [expected.replace(" ", "")] and there.texts == here.texts)
        self.assertIn(b"1-0", self.command("realtime:{ch:room}:stream", "XRANGE", "-", "+"))

    async def test_noSubscriberNoOk(self) -> None:
        """
        A message no node received is answered as delivered to nobody,
        though it is kept.
        """
        (a,) = await self.nodes(1)
        result = await a.publisher.publish("empty", b"1")
        self.assertEqual((result.delivered, result.offset), (0, 1))

    async def test_concurrentPublishersInOrder(self) -> None:
        """
        Two nodes publishing to one channel at once: every node delivers
        every message once, in offset order.
        """
        a, b = await self.nodes()
        here, there = await self.subscribers([a, b])
        sent = [(a if i % 2 else b).publisher.publish("room", b"%d" % i) for i in range(300)]
        results = await gatherResults(sent)
        self.assertEqual(sorted(r.offset for r in results), list(range(1, 301)))
        expected = list(range(1, 301))
        await until(lambda: offsets(here) == expected and offsets(there) == expected)

    async def test_slowStoreCannotReorder(self) -> None:
        """
        Node A's message is offset 1, node B's offset 2, and B's is
        published before A hears back from Redis: subscribers still get 1
        then 2.  With two steps (append, then publish) this delivered 2
        then 1 (and a real subscription then dropped 1 as already seen).
        """
        a, b = await self.nodes()
        here, there = await self.subscribers([a, b])
        a.gated.gated = True
        first = a.publisher.publish("room", b'"a"')
        await until(lambda: a.gated.waiting == 1 or self.streamLength("room") == 1)
        second = await b.publisher.publish("room", b'"b"')
        a.gated.gated = False
        a.gated.drain()
        self.assertEqual(((await first).offset, second.offset), (1, 2))
        await until(lambda: len(offsets(here)) == 2 and len(offsets(there)) == 2)
        self.assertEqual((offsets(here), offsets(there)), ([1, 2], [1, 2]))

    def streamLength(self, channel: str) -> int:
        return int(self.command(f"realtime:{{ch:{channel}}}:stream", "XLEN")[1:-2])

    async def test_gapRecovered(self) -> None:
        """
        Messages that reached the history but never pub/sub (appended by a
        node that did not publish them) are noticed at the next message,
        read back and delivered in order, once each.
        """
        a, b = await self.nodes()
        here, there = await self.subscribers([a, b])
        await a.publisher.publish("room", b"1")
        for i in range(2, 5):
            await a.store.append("room", b"%d" % i, False, KEEP, reactor.seconds())
        for i in range(5, 8):
            b.publisher.publish("room", b"%d" % i)
        expected = list(range(1, 8))
        await until(lambda: offsets(here) == expected and offsets(there) == expected)
        self.assertEqual((a.broker.recovered, b.broker.recovered), (3, 3))

    async def test_gapsUnderLoad(self) -> None:
        """
        Gaps among messages published from two nodes at once, the live ones
        held back while each gap is read: still every message once, in
        order.
        """
        a, b = await self.nodes()
        here, there = await self.subscribers([a, b])
        sent: list[Deferred[Any]] = []
        for i in range(200):
            if i % 17 == 5:
                sent.append(a.store.append("room", b"%d" % i, False, KEEP, reactor.seconds()))
            else:
                sent.append((a if i % 2 else b).publisher.publish("room", b"%d" % i))
        await gatherResults(sent)
        expected = list(range(1, 201))
        await until(lambda: offsets(here) == expected and offsets(there) == expected)

    async def test_lostLastMessage(self) -> None:
        """
        A lost message with nothing after it is found by the periodic check
        of the streams' tops, and delivered.
        """
        (a,) = await self.nodes(1)
        (here,) = await self.subscribers([a])
        await a.publisher.publish("room", b"1")
        await a.store.append("room", b"2", False, KEEP, reactor.seconds())
        await until(lambda: offsets(here) == [1, 2])
        self.assertEqual(a.broker.recovered, 1)

    async def test_lostBeforeTheFirstMessage(self) -> None:
        """
        The position starts where the stream was at the first subscription:
        what was kept after it and never published is delivered too.
        """
        (a,) = await self.nodes(1)
        await a.store.append("room", b"1", False, KEEP, reactor.seconds())
        (here,) = await self.subscribers([a])
        await a.store.append("room", b"2", False, KEEP, reactor.seconds())
        await a.publisher.publish("room", b"3")
        await until(lambda: offsets(here) == [2, 3])

    async def test_epochChanges(self) -> None:
        """
        A history that was lost starts a new epoch at offset 1: the node
        follows it, delivering its first message rather than taking it for
        an old one.
        """
        (a,) = await self.nodes(1)
        (here,) = await self.subscribers([a])
        for i in range(3):
            await a.publisher.publish("room", b"%d" % i)
        self.command("realtime:{ch:room}:meta", "DEL")
        result = await a.publisher.publish("room", b'"new"')
        self.assertEqual(result.offset, 1)
        await until(lambda: offsets(here) == [1, 2, 3, 1])
        self.assertEqual(json.loads(here.texts[-1])["epoch"], result.epoch)

    async def test_epochChangeReachesSubscriptions(self) -> None:
        """
        A session's subscription (which drops offsets it already wrote)
        takes the first messages of a new epoch too: offsets start over
        when the history does.
        """
        (a,) = await self.nodes(1)
        session = FakeSession("u")
        a.registry.add(session)
        subscription = Subscription(session, "room")
        a.registry.subscribe(subscription)
        subscription.release(0)
        await until(lambda: self.subscribedTo("realtime:{ch:room}:pub", 1))
        for i in range(3):
            await a.publisher.publish("room", b"%d" % i)
        self.command("realtime:{ch:room}:meta", "DEL")
        await a.publisher.publish("room", b'"new"')
        await until(lambda: offsets(session) == [1, 2, 3, 1])

    async def test_noHistoryNoTracking(self) -> None:
        """
        A channel whose namespace keeps no history is published as before
        (no offset) and not followed for gaps.
        """
        (a,) = await self.nodes(1)
        session = a.subscriber("quiet:1")
        await until(lambda: self.subscribedTo("realtime:{ch:quiet:1}:pub", 1))
        result = await a.publisher.publish("quiet:1", b"1")
        self.assertIsNone(result.offset)
        await until(lambda: len(session.texts) == 1)
        self.assertFalse(a.broker._gaps is None or a.broker._gaps.tracking("quiet:1"))

    async def test_redisDownFails(self) -> None:
        """
        While Redis is unreachable a channel publish fails as the store's
        failure, never answered as delivered.
        """
        (a,) = await self.nodes(1)
        self.redis.stop()
        self.addCleanup(self.redis.start)
        with self.assertRaises(StoreUnavailable):
            await a.publisher.publish("room", b"1")
        self.assertIsNotNone(a.monitored.problem)
        self.assertTrue(self.flushLoggedErrors(RedisConnectionError))


class ClusterHistoryBrokerTests(HistoryBrokerTests):
    """
    The same on a Redis Cluster of three masters (shared by the Redis
    tests): the script appends and publishes with C{SPUBLISH} on the master
    of the channel's slot.
    """

    def setUp(self) -> None:
        self.redis = sharedCluster()
        self.redis.flush()

    #: not run here: it stops its Redis, and the cluster is shared by the
    #: Redis tests (HistoryBrokerTests runs it on a Redis of its own; a
    #: loader leaves out a test name that is not callable)
    test_redisDownFails = None  # type: ignore[assignment]


class ShareHistoryTests(TestCase):
    """
    L{shareHistory} lets the broker keep history only with the Redis store
    on the same Redis; every other combination keeps two steps.
    """

    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)

    def broker(self) -> RedisBroker:
        client = aioredis.Redis.from_url(self.redis.url, protocol=3)
        self.addCleanup(lambda: onLoop(loopOf(reactor), client.aclose()))
        return RedisBroker(client, reactor, SessionRegistry(), Fanout(reactor))

    def store(self, url: str | None = None) -> MonitoredStore:
        store = MonitoredStore(RedisMessageStore.fromURL(url or self.redis.url, reactor))
        self.addCleanup(store.close)
        return store

    def test_sameRedis(self) -> None:
        broker = self.broker()
        shareHistory(self.redis.url, broker, self.redis.url, self.store(), RULES)
        self.assertTrue(IHistoryBroker.providedBy(broker))

    def test_otherCombinations(self) -> None:
        other = f"redis://127.0.0.1:{self.redis.port}/1"
        combinations: list[tuple[str, Any, str, Any]] = [
            (self.redis.url, self.broker(), other, self.store(other)),
            (self.redis.url, self.broker(), "memory", MonitoredStore(MemoryMessageStore())),
            ("memory", MemoryBroker(SessionRegistry(), Fanout(reactor)), self.redis.url, self.store()),
        ]
        for brokerSpec, broker, storeSpec, store in combinations:
            shareHistory(brokerSpec, broker, storeSpec, store, RULES)
            self.assertFalse(IHistoryBroker.providedBy(broker), (brokerSpec, storeSpec))
