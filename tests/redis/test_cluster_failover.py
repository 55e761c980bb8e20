"""
A Redis Cluster master replaced by its replica, with nodes on it: the
nodes follow the new master by themselves, sessions stay connected, pushes
meanwhile are refused (never a false ok) and afterwards delivered once.

Its own cluster of three masters with one replica each (six
C{redis-server}s), for this module.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from realtime.broker import BrokerUnavailable
from realtime.broker.redismessages import ChannelNames
from realtime.values import Envelope, PushResult, ToChannel, ToUids
from tests.redis.test_broker_redis import Node, startedNodes
from tests.redisserver import RedisClusterServers, until

_cluster: RedisClusterServers | None = None


def setUpModule() -> None:
    global _cluster
    _cluster = RedisClusterServers(replicas=1)


def tearDownModule() -> None:
    if _cluster is not None:
        _cluster.cleanup()


class ClusterFailoverTests(TestCase):
    names = ChannelNames()

    def setUp(self) -> None:
        assert _cluster is not None
        self.redis = _cluster
        self.redis.waitUntilReady()
        self.redis.flush()

    async def push(self, node: Node, uid: str, data: bytes) -> PushResult | None:
        """
        The answer to a push, or C{None} if it was refused as the broker
        being unavailable (what a backend is told during a failover).
        """
        try:
            return await node.broker.publish(Envelope(ToUids((uid,)), data))
        except BrokerUnavailable:
            return None

    async def deliveredAgain(self, node: Node, uid: str, timeout: float = 30.0) -> list[int | None]:
        """
        Push C{b"after N"} to C{uid} until one is answered delivered; the
        answers, in order (C{None} for a refused push).
        """
        answers: list[int | None] = []
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            result = await self.push(node, uid, b"after %d" % len(answers))
            answers.append(None if result is None else result.delivered)
            if result is not None and result.delivered:
                return answers
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"no push delivered after the failover: {answers}")

    async def failover(self, uid: str, forced: bool) -> None:
        master = self.redis.ownerOf(self.names.uid(uid))
        replica = self.redis.replicaOf(master)
        if forced:
            master.stop()
            self.addCleanup(self._rejoin, master)
        else:
            replica.command("CLUSTER", "FAILOVER")

        def promoted() -> bool:
            try:
                return self.redis.ownerOf(self.names.uid(uid)) is replica
            except AssertionError:
                # killed, and not replaced yet: no master owns the slot
                return False

        await until(promoted, timeout=30)

    def _rejoin(self, master: Any) -> None:
        # back as a replica of the node that took over (its nodes.conf says
        # so), in sync before the next test fails anything over
        master.start()
        self.redis.waitUntilReady()
        self.redis.waitUntilReplicated(3)

    async def check(self, forced: bool) -> None:
        a, b = await startedNodes(self, self.redis.url, 2, probeInterval=0.2, probeTimeout=1.0)
        session = b.session("u1")
        watcher = b.session("w")
        b.subscribe(watcher, "news")
        await until(lambda: self.redis.subscribers(self.names.uid("u1"))[self.names.uid("u1")] == 1)
        await b.broker._presence.heartbeat()
        self.assertEqual((await a.broker.publish(Envelope(ToUids(("u1",)), b"before"))).delivered, 1)
        await until(lambda: session.texts == ["before"])

        await self.failover("u1", forced)
        answers = await self.deliveredAgain(a, "u1")
        last = f"after {len(answers) - 1}"
        await until(lambda: session.texts[-1:] == [last])
        # a push answered as reaching nobody reached nobody; a refused one
        # may have arrived (a PUBLISH cut off after Redis ran it), but once
        # and in order
        self.assertEqual(session.texts[0], "before")
        after = [int(text.split()[1]) for text in session.texts[1:]]
        self.assertEqual(after, sorted(set(after)), session.texts)
        self.assertEqual([i for i in after if answers[i] == 0], [], answers)
        try:
            await until(lambda: a.broker.problem is None and b.broker.problem is None, timeout=15)
        except AssertionError:
            raise AssertionError(f"problems: {a.broker.problem!r} {b.broker.problem!r}")

        # channels deliver too, whichever master holds them
        result = await a.broker.publish(Envelope(ToChannel("news"), b"still"))
        self.assertEqual(result.delivered, 1)
        await until(lambda: watcher.texts == ["still"])

    async def test_manualFailover(self) -> None:
        """
        C{CLUSTER FAILOVER} on the replica of a uid's master: the nodes
        follow the promoted replica, the uid's session stays and gets the
        next pushes once each, and nothing is answered delivered that was
        not.
        """
        await self.check(forced=False)

    async def test_masterKilled(self) -> None:
        """
        A uid's master killed: its replica takes over after the cluster's
        node timeout; meanwhile pushes are refused, then delivered again.
        """
        await self.check(forced=True)
