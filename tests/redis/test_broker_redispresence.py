"""
Tests for L{realtime.broker.redispresence}: presence and totals shared by
the nodes of a cluster, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from realtime.broker.redispresence import RedisPresence
from realtime.redisio import clientFor
from tests.redisserver import RedisServer, sharedCluster, sharedServer, until


class PresenceTests(TestCase):
    """
    Presence on the single Redis shared by this process's tests.
    """

    def setUp(self) -> None:
        self.redis: Any = sharedServer()
        self.redis.flush()

    def ownServer(self) -> RedisServer:
        """
        A Redis of this test's own, for a test that stops it.
        """
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        return self.redis

    def node(self, name: str, **kwargs: object) -> RedisPresence:
        client = clientFor(self.redis.url)
        presence = RedisPresence(client, reactor, name, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(lambda: presence.stop() if not presence._pipeliner.closed else None)
        return presence

    async def test_countsAcrossNodes(self) -> None:
        """
        A uid's connections on every node add up; a node's leaving counts
        down on its own share only.
        """
        a, b = self.node("a"), self.node("b")
        await a.start()
        await b.start()
        await a.connected("u1")
        await a.connected("u1")
        await b.connected("u1")
        await a.heartbeat()
        self.assertEqual(await a.connectionCount("u1"), 3)
        await b.disconnected("u1")
        self.assertEqual(await a.connectionCount("u1"), 2)
        self.assertEqual(await b.connectionCount("u2"), 0)

    async def test_channelPresence(self) -> None:
        """
        Channel presence lists the uids subscribed on every live node.
        """
        a, b = self.node("a"), self.node("b")
        await a.start()
        await b.start()
        await a.joined("room", "s1", "alice")
        await b.joined("room", "s2", "bob")
        await b.joined("room", "s3", "bob")
        await a.heartbeat()
        self.assertEqual(await a.presence("room"), {"channel": "room", "uids": {"alice": 1, "bob": 2}, "connections": 3})
        await b.left("room", "s3")
        self.assertEqual((await a.presence("room"))["uids"], {"alice": 1, "bob": 1})

    async def test_totals(self) -> None:
        """
        Stats are the live nodes' totals summed, read from Redis.
        """
        a = self.node("a", totals=lambda: {"connections": 3, "uids": 2})
        b = self.node("b", totals=lambda: {"connections": 4, "uids": 1})
        await a.start()
        await b.start()
        await a.heartbeat()
        self.assertEqual(await a.stats(), {"nodes": 2, "connections": 7, "uids": 3})

    async def test_deadNodeStopsCounting(self) -> None:
        """
        A node that stops beating (killed: no clean stop) stops being
        counted once its heartbeat is stale, and its fields are pruned.
        """
        a = self.node("a", heartbeatInterval=0.1, staleAfter=0.5)
        b = self.node("b", heartbeatInterval=0.1, staleAfter=0.5)
        await a.start()
        await b.start()
        await b.connected("u1")
        await b.joined("room", "s1", "bob")
        await a.heartbeat()
        self.assertEqual(await a.connectionCount("u1"), 1)
        b._beat.stop()  # as if SIGKILLed
        b._refresh.stop()
        await task.deferLater(reactor, 0.8, lambda: None)
        self.assertEqual(a.liveNodes, {"a"})
        self.assertEqual(await a.connectionCount("u1"), 0)
        self.assertEqual((await a.presence("room"))["uids"], {})
        self.assertEqual(self.redis.command("HLEN", "realtime:{u:u1}:conns"), b":0\r\n")

    async def test_cleanStop(self) -> None:
        """
        A node that stops cleanly takes its fields with it at once.
        """
        a, b = self.node("a"), self.node("b")
        await a.start()
        await b.start()
        await b.connected("u1")
        await b.stop()
        await a.heartbeat()
        self.assertEqual(await a.connectionCount("u1"), 0)
        self.assertNotIn("b", a.liveNodes)

    async def test_stopWhileRedisIsDown(self) -> None:
        """
        A node stops while Redis is unreachable: it cannot remove its
        fields, says so, and stops all the same (the others stop counting it
        when its heartbeat goes stale) instead of failing its shutdown.
        """
        self.ownServer()
        a = self.node("a")
        await a.start()
        await a.connected("u1")
        self.redis.stop()
        await a.stop()
        self.assertTrue(a._pipeliner.closed)
        self.assertFalse(a._beat.running)

    async def test_refreshRestoresLostData(self) -> None:
        """
        After Redis loses its data, each node's refresh writes its share back.
        """
        a = self.node("a")
        await a.start()
        await a.connected("u1")
        await a.joined("room", "s1", "alice")
        self.redis.flush()
        await a.heartbeat()
        await a.refresh()
        self.assertEqual(await a.connectionCount("u1"), 1)
        self.assertEqual((await a.presence("room"))["uids"], {"alice": 1})

    async def test_rewriteWaitsUntilSettled(self) -> None:
        """
        A rewrite of the node's share waits until the pub/sub link has
        settled (subscribed again after a reconnect): a count back in Redis
        before the node hears its uid would answer a push delivered that
        nobody receives.
        """
        settled: Deferred[None] = Deferred()
        a = self.node("a", settled=lambda: settled)
        await a.connected("u1")
        self.redis.flush()
        rewritten = a.refresh()
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertFalse(rewritten.called)
        self.assertEqual(await a.connectionCount("u1"), 0)
        settled.callback(None)
        await rewritten
        self.assertEqual(await a.connectionCount("u1"), 1)

    async def test_heartbeatOutlivesAnOutage(self) -> None:
        """
        The heartbeat goes on through a Redis outage, so the node counts
        again once Redis is back, with nobody restarting anything.
        """
        self.ownServer()
        a = self.node("a", heartbeatInterval=0.1, staleAfter=0.5)
        await a.start()
        self.redis.stop()
        await task.deferLater(reactor, 0.5, lambda: None)
        self.redis.start()
        await until(lambda: b"a" in self.redis.command("ZRANGE", "realtime:{nodes}:alive", "0", "-1"))
        self.assertTrue(a._beat.running)

    async def test_newNodeCountsAtOnce(self) -> None:
        """
        A node that started after the reader's last heartbeat is counted,
        and its fields are not pruned as a dead node's would be.
        """
        a = self.node("a")
        await a.start()
        b = self.node("b")
        await b.start()
        await b.connected("u1")
        self.assertNotIn("b", a.liveNodes)
        self.assertEqual(await a.connectionCount("u1"), 1)
        self.assertEqual(await b.connectionCount("u1"), 1)

    async def test_lostDataWrittenBackAtOnce(self) -> None:
        """
        A heartbeat that finds this node gone from Redis (Redis restarted
        without its data) writes the node's share back at once, not at the
        next refresh (a push meanwhile would count nobody and be queued for
        a uid that is connected); until then the presence says it has a
        problem.
        """
        a = self.node("a", refreshInterval=3600)
        await a.start()
        await a.connected("u1")
        await a.joined("room", "s1", "alice")
        self.redis.flush()
        await a.heartbeat()
        await until(lambda: a.problem is None)
        self.assertEqual(await a.connectionCount("u1"), 1)
        self.assertEqual((await a.presence("room"))["uids"], {"alice": 1})

    async def test_changesDuringAnOutageWrittenAfter(self) -> None:
        """
        Sessions that come and go while Redis cannot be reached are counted
        right once it is back: the node's share is rewritten after its first
        heartbeat that Redis answers, and what left meanwhile is removed
        (else a uid gone during the outage would be counted online, and
        pushes to it answered delivered, until its key expired).  While the
        writes are owed, the presence says so.
        """
        self.ownServer()
        a = self.node("a", heartbeatInterval=0.1, refreshInterval=3600)
        await a.start()
        await a.connected("gone")
        await a.joined("room", "s1", "gone")
        self.redis.stop()
        await self.assertFailure(a.disconnected("gone"), Exception)
        await self.assertFailure(a.left("room", "s1"), Exception)
        await self.assertFailure(a.connected("new"), Exception)
        self.assertIsNotNone(a.problem)
        self.redis.start()
        await until(lambda: a.problem is None)
        self.assertEqual(await a.connectionCount("gone"), 0)
        self.assertEqual(await a.connectionCount("new"), 1)
        self.assertEqual((await a.presence("room"))["uids"], {})

    def commandsPerPipeline(self, presence: RedisPresence) -> list[int]:
        """
        The commands each pipeline of C{presence} carries from now on, one
        entry per pipeline (queued in one reactor turn).
        """
        pipeliner, counts = presence._pipeliner, []
        flush, submit = pipeliner._flush, pipeliner.submit

        def counted(queue: Any, finish: Any, checked: bool = True) -> Deferred[Any]:
            def queueCounted(pipe: Any) -> int:
                queued: int = queue(pipe)
                counts[-1] += queued
                return queued

            return submit(queueCounted, finish, checked)

        def flushCounted() -> None:
            counts.append(0)
            flush()

        pipeliner.submit, pipeliner._flush = counted, flushCounted  # type: ignore[method-assign]
        return counts

    async def test_rewriteInSteps(self) -> None:
        """
        A node's share is rewritten a step at a time, a few hundred uids or
        members a pipeline, so neither a reactor turn nor Redis is held for
        all of a big node's sessions at once; all of it is written back.
        """
        a = self.node("a")
        await a.start()
        await gatherResults([a.connected(f"u{i}") for i in range(2500)])
        await gatherResults([a.joined("big", f"s{i}", f"u{i}") for i in range(1200)])
        await a.joined("small", "s1", "u1")
        self.redis.flush()
        perPipeline = self.commandsPerPipeline(a)
        await a.refresh()
        self.assertLessEqual(max(perPipeline), 1000)
        self.assertEqual([await a.connectionCount(u) for u in ("u0", "u1", "u2499")], [1, 1, 1])
        self.assertEqual((await a.presence("big"))["connections"], 1200)
        self.assertEqual((await a.presence("small"))["uids"], {"u1": 1})

    async def test_stopInSteps(self) -> None:
        """
        A clean stop removes a big node's fields a step at a time too, the
        node leaving the live set first.
        """
        a, b = self.node("a"), self.node("b")
        await a.start()
        await b.start()
        await gatherResults([b.connected(f"u{i}") for i in range(2500)])
        await gatherResults([b.joined("big", f"s{i}", f"u{i}") for i in range(600)])
        perPipeline = self.commandsPerPipeline(b)
        await b.stop()
        self.assertLessEqual(max(perPipeline), 1000)
        await a.heartbeat()
        self.assertNotIn("b", a.liveNodes)
        self.assertEqual(self.redis.command("HLEN", "realtime:{u:u2499}:conns"), b":0\r\n")
        self.assertEqual((await a.presence("big"))["connections"], 0)

    async def test_changesDuringARewrite(self) -> None:
        """
        What changes while a rewrite goes on step by step is counted once:
        a uid gone before its step is not written back, one that came
        again is not counted twice, a member gone is not listed.
        """
        a = self.node("a")
        await a.start()
        await gatherResults([a.connected(f"u{i}") for i in range(1500)])
        await gatherResults([a.joined("big", f"s{i}", f"u{i}") for i in range(1500)])
        self.redis.flush()
        rewritten = a.refresh()
        await gatherResults(
            [a.disconnected("u1499"), a.connected("u1498"), a.left("big", "s1499"), a.connected("new")]
        )
        await rewritten
        counts = [await a.connectionCount(u) for u in ("u0", "u1498", "u1499", "new")]
        self.assertEqual(counts, [1, 2, 0, 1])
        self.assertEqual((await a.presence("big"))["connections"], 1499)


class ClusterPresenceTests(PresenceTests):
    """
    The same presence on a Redis Cluster of three masters: each script's
    keys share a hash tag (a uid's, a channel's, the nodes' C{{nodes}}), and
    the reads over many nodes' totals run as one pipeline split per slot.
    """

    def setUp(self) -> None:
        self.redis = sharedCluster()
        self.redis.flush()

    #: not run here: they stop their Redis, and the cluster is shared by
    #: this module's tests (PresenceTests runs them on a Redis of their own;
    #: a loader leaves out a test name that is not callable)
    test_heartbeatOutlivesAnOutage = None  # type: ignore[assignment]
    test_changesDuringAnOutageWrittenAfter = None  # type: ignore[assignment]
    test_stopWhileRedisIsDown = None  # type: ignore[assignment]

    async def test_keysSpreadOverMasters(self) -> None:
        """
        Many uids' and channels' presence lands on several masters, and the
        counts read back from each are right.
        """
        a = self.node("a")
        await a.start()
        for i in range(12):
            await a.connected(f"u{i}")
            await a.joined(f"room{i}", f"s{i}", f"u{i}")
        self.assertEqual([await a.connectionCount(f"u{i}") for i in range(12)], [1] * 12)
        self.assertEqual([(await a.presence(f"room{i}"))["connections"] for i in range(12)], [1] * 12)
        holders = [n for n in self.redis.nodes if n.command("DBSIZE") != b":0\r\n"]
        self.assertEqual(len(holders), 3)
