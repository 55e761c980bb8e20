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
from realtime.broker.redispresence import PresenceKeys
from realtime.values import Envelope, PushResult, ToChannel, ToUids
from tests.redis.test_broker_redis import Node, startedNodes
from tests.redisserver import RedisClusterServers, _words, until

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

    def heldOn(self, master: Any, uid: str) -> bool:
        """
        Whether a node is subscribed to C{uid}'s channel on C{master}, and
        counted there as holding C{uid} (its count, in the same slot, may
        come back a moment after its subscription when Redis lost both).
        """
        words = _words(master.command("PUBSUB", "SHARDNUMSUB", self.names.uid(uid)))
        counted = master.command("HLEN", PresenceKeys().connections(uid))
        # an error (MOVED, from a master not yet promoted) counts nobody
        return int(words[1]) > 0 and counted[:1] == b":" and int(counted[1:]) > 0

    async def deliveredAgain(self, node: Node, uid: str, master: Any, timeout: float = 30.0) -> list[tuple[int | None, bool]]:
        """
        Push C{b"after N"} to C{uid} until one is answered delivered; the
        answers, in order (C{None} for a refused push), each with whether a
        node was subscribed to the uid on C{master}, and counted, before it
        was sent.
        """
        answers: list[tuple[int | None, bool]] = []
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            held = self.heldOn(master, uid)
            result = await self.push(node, uid, b"after %d" % len(answers))
            answers.append((None if result is None else result.delivered, held))
            if result is not None and result.delivered:
                return answers
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"no push delivered after the failover: {answers}")

    async def deliveredOnce(self, session: Any, answers: list[tuple[int | None, bool]], *nodes: Node, earlier: int) -> None:
        """
        The pushes of L{deliveredAgain} reached C{session} (after its
        C{earlier} texts) once each and in order: the last, answered
        delivered, surely; one answered as reaching nobody once a node was
        subscribed on the new master and counted there, never; a refused one maybe (a PUBLISH
        cut off after Redis ran it).  Before the nodes follow, the old
        master may relay a push in the instant it turns replica, uncounted
        by the new master (Redis's own race, not the nodes').  Then every
        node's problem clears.
        """
        last = f"after {len(answers) - 1}"
        await until(lambda: session.texts[-1:] == [last])
        after = [int(text.split()[1]) for text in session.texts[earlier:]]
        self.assertEqual(after, sorted(set(after)), session.texts)
        self.assertEqual([i for i in after if answers[i] == (0, True)], [], answers)
        try:
            await until(lambda: all(node.broker.problem is None for node in nodes), timeout=15)
        except AssertionError:
            raise AssertionError(f"problems: {[node.broker.problem for node in nodes]!r}")

    async def failover(self, uid: str, forced: bool) -> Any:
        """
        Replace the master of C{uid}'s channel by its replica; answers the
        replica, once it owns the slot.
        """
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
        return replica

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

        master = await self.failover("u1", forced)
        promotedAt = reactor.seconds()
        answers = await self.deliveredAgain(a, "u1", master)
        # node B follows the uid to its new master at once
        await until(lambda: self.heldOn(master, "u1"), timeout=5)
        self.assertLess(reactor.seconds() - promotedAt, 5, answers)
        self.assertEqual(session.texts[0], "before")
        await self.deliveredOnce(session, answers, a, b, earlier=1)

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

    async def test_wholeClusterDown(self) -> None:
        """
        Every server of the cluster down at once: pushes are refused (never
        a false ok) and each node names its trouble, the sessions stay; once
        the cluster is back, empty, the nodes find it by themselves, write
        their presence back and deliver again, once each.
        """
        a, b = await startedNodes(self, self.redis.url, 2, probeInterval=0.2, probeTimeout=1.0)
        session = b.session("u1")
        await until(lambda: self.heldOn(self.redis.ownerOf(self.names.uid("u1")), "u1"))
        await b.broker._presence.heartbeat()
        for server in self.redis.nodes:
            server.stop()
        self.addCleanup(self._rejoinAll)
        with self.assertRaises(BrokerUnavailable):
            await a.broker.publish(Envelope(ToUids(("u1",)), b"lost"))
        await until(lambda: a.broker.problem is not None and b.broker.problem is not None)
        self._rejoinAll()
        self.assertTrue(session.open)
        answers = await self.deliveredAgain(a, "u1", self.redis.ownerOf(self.names.uid("u1")))
        await self.deliveredOnce(session, answers, a, b, earlier=0)

    def _rejoinAll(self) -> None:
        # each server back with its nodes.conf: the same masters and replicas
        self.redis.waitUntilReady()
        self.redis.waitUntilReplicated(3)
