"""
Tests for L{realtime.broker.redis}: several nodes on one Redis act as one
broker, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from realtime.broker.redis import RedisBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.interfaces import IBroker, IRegistryObserver
from realtime.redisio import loopOf, onLoop
from realtime.testing import FakeSession
from realtime.values import Envelope, ToAll, ToChannel, ToUids
from tests.fakes import PassingSubscription
from tests.redisserver import RedisServer, until


class Node:
    """
    One node: a registry, a fan-out and a Redis broker.
    """

    def __init__(self, test: TestCase, url: str, **kwargs: Any) -> None:
        self.registry = SessionRegistry()
        self.client = aioredis.Redis.from_url(url, protocol=3)
        self.broker = RedisBroker(self.client, reactor, self.registry, Fanout(reactor), **kwargs)
        test.addCleanup(lambda: onLoop(loopOf(reactor), self.client.aclose()))
        test.addCleanup(self.stop)
        self.stopped = False

    def stop(self) -> Deferred[None] | None:
        if self.stopped:
            return None
        self.stopped = True
        return self.broker.stop()

    def session(self, uid: str) -> FakeSession:
        session = FakeSession(uid)
        self.registry.add(session)
        return session

    def subscribe(self, session: FakeSession, channel: str) -> None:
        self.registry.subscribe(PassingSubscription(session, channel))


class RedisBrokerTests(TestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)

    async def nodes(self, count: int = 2, **kwargs: Any) -> list[Node]:
        nodes = [Node(self, self.redis.url, **kwargs) for _ in range(count)]
        for node in nodes:
            await node.broker.start()
        for node in nodes:
            await node.broker._presence.heartbeat()
        return nodes

    async def eventually(self, operation: Any, attempts: int = 5) -> Any:
        """
        C{operation()}'s result, trying again while it fails with a
        connection error (at most C{attempts} times).
        """
        for attempt in range(attempts):
            try:
                return await operation()
            except ConnectionError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def subscribedTo(self, *names: str) -> bool:
        raw = self.redis.command("PUBSUB", "NUMSUB", *names)
        counts = [line for line in raw.split(b"\r\n") if line.startswith(b":")]
        return all(c != b":0" for c in counts)

    async def test_interfaces(self) -> None:
        """
        The broker is an L{IBroker} and watches its registry.
        """
        (node,) = await self.nodes(1)
        self.assertTrue(verifyObject(IBroker, node.broker))
        self.assertTrue(verifyObject(IRegistryObserver, node.broker))

    async def test_pushToAUidOnAnotherNode(self) -> None:
        """
        A push taken by node A reaches the uid's sessions on node B, once,
        and is answered with how many connections hold the uid.
        """
        a, b = await self.nodes()
        alice = b.session("alice")
        alsoAlice = b.session("alice")
        await until(lambda: self.subscribedTo("realtime:{u:alice}:push"))
        await until(lambda: b.registry.hasSessions("alice"))
        await b.broker._presence.heartbeat()
        result = await a.broker.publish(Envelope(ToUids(("alice",)), b"hello"))
        self.assertEqual((result.delivered, dict(result.uids)), (2, {"alice": 2}))
        await until(lambda: alice.texts == ["hello"] and alsoAlice.texts == ["hello"])

    async def test_noFalseOk(self) -> None:
        """
        A push to a uid no node holds is answered as delivered nowhere.
        """
        a, b = await self.nodes()
        result = await a.broker.publish(Envelope(ToUids(("nobody",)), b"x"))
        self.assertEqual((result.delivered, dict(result.uids)), (0, {"nobody": 0}))

    async def test_exactlyOnceOnThePublishingNode(self) -> None:
        """
        The publishing node's own sessions get the message once, through
        Redis like everyone's, in the order published.
        """
        a, b = await self.nodes()
        here, there = a.session("u1"), b.session("u1")
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        for i in range(50):
            a.broker.publish(Envelope(ToUids(("u1",)), b"%d" % i))
        expected = [str(i) for i in range(50)]
        await until(lambda: here.texts == expected and there.texts == expected)

    async def test_channelAndBroadcast(self) -> None:
        """
        A channel message reaches the subscribers on every node, a broadcast
        every session on every node.
        """
        a, b = await self.nodes()
        s1, s2, s3 = a.session("u1"), b.session("u2"), b.session("u3")
        a.subscribe(s1, "room")
        b.subscribe(s2, "room")
        await until(lambda: self.subscribedTo("realtime:{ch:room}:pub"))
        await until(lambda: int(self.redis.command("HLEN", "realtime:{ch:room}:members")[1:-2]) == 2)
        result = await b.broker.publish(Envelope(ToChannel("room"), b"m", offset=7))
        self.assertEqual(result.delivered, 2)
        await until(lambda: s1.texts == ["m"] and s2.texts == ["m"])
        self.assertEqual(s3.texts, [])
        await a.broker._presence.heartbeat()
        await b.broker._presence.heartbeat()
        result = await a.broker.publish(Envelope(ToAll(), b"all"))
        self.assertEqual(result.delivered, 3)
        await until(lambda: [s.texts[-1:] for s in (s1, s2, s3)] == [["all"]] * 3)

    async def test_onlyWhatIsNeeded(self) -> None:
        """
        A node is subscribed to a uid's channel only while it holds a session
        of that uid.
        """
        (a,) = await self.nodes(1)
        session = a.session("u1")
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        a.registry.discard(session)
        await until(lambda: not self.subscribedTo("realtime:{u:u1}:push"))

    async def test_clusterWideCounts(self) -> None:
        """
        Connection counts, presence and stats are the cluster's.
        """
        a, b = await self.nodes()
        a.session("u1")
        s = b.session("u1")
        b.subscribe(s, "room")
        await until(lambda: int(self.redis.command("HLEN", "realtime:{ch:room}:members")[1:-2]) == 1)
        await a.broker._presence.heartbeat()
        await b.broker._presence.heartbeat()
        self.assertEqual(await a.broker.connectionCount("u1"), 2)
        self.assertEqual((await a.broker.presence("room"))["uids"], {"u1": 1})
        stats = await a.broker.stats()
        self.assertEqual((stats["nodes"], stats["connections"], stats["uids"]), (2, 2, 2))

    async def test_redisDown(self) -> None:
        """
        While Redis is unreachable a push fails with the reason (never a
        false ok), the broker says what is wrong; after Redis is back, it
        delivers again by itself.
        """
        a, b = await self.nodes(probeInterval=0.2, probeTimeout=1.0)
        session = b.session("u1")
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        self.redis.stop()
        with self.assertRaises(ConnectionError):
            await a.broker.publish(Envelope(ToUids(("u1",)), b"lost"))
        await until(lambda: a.broker.problem is not None)
        self.redis.start()
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        # each client's first command after the restart may meet a pooled
        # connection Redis closed: it fails (honestly), the next reconnects
        await self.eventually(b.broker._presence.refresh)
        await self.eventually(b.broker._presence.heartbeat)
        await self.eventually(a.broker._presence.heartbeat)
        result = await self.eventually(lambda: a.broker.publish(Envelope(ToUids(("u1",)), b"back")))
        self.assertEqual(result.delivered, 1)
        await until(lambda: session.texts == ["back"])
        await until(lambda: a.broker.problem is None)
