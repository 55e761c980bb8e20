"""
Tests for L{realtime.broker.redis}: several nodes on one Redis act as one
broker, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from realtime.broker import BrokerUnavailable
from realtime.broker import redis as redisbroker
from realtime.broker.redis import RedisBroker, _unavailable
from realtime.broker.redismessages import ChannelNames
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.interfaces import IBatchBroker, IBroker, IRegistryObserver
from realtime.redisio import clientFor, loopOf, onLoop
from realtime.testing import FakeSession
from realtime.values import Envelope, ToAll, ToChannel, ToUids
from tests.fakes import PassingSubscription
from tests.redis.test_broker_redispubsub import SilenceableProxy
from tests.redisserver import RedisServer, _words, sharedCluster, until


class Node:
    """
    One node: a registry, a fan-out and a Redis broker.
    """

    def __init__(self, test: TestCase, url: str, **kwargs: Any) -> None:
        self.registry = SessionRegistry()
        self.client = clientFor(url)
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


async def startedNodes(test: TestCase, url: str, count: int, **kwargs: Any) -> list[Node]:
    """
    C{count} nodes on the Redis at C{url}, started, each counted live by
    the others (one heartbeat each).
    """
    nodes = [Node(test, url, **kwargs) for _ in range(count)]
    for node in nodes:
        await node.broker.start()
    for node in nodes:
        await node.broker._presence.heartbeat()
    return nodes


class UnavailableTests(TestCase):
    """
    Which failures of redis-py a push is refused with as the broker being
    unavailable (HTTP 503), and which stay bugs.
    """

    def test_noClusterNodeReachable(self) -> None:
        """
        redis-py's cluster client, with no node reachable, raises a
        C{RedisClusterException} from the last connection error: Redis is
        unreachable, said so.
        """
        try:
            try:
                raise RedisConnectionError("Error 111 connecting")
            except RedisConnectionError as e:
                raise RedisClusterException("Redis Cluster cannot be connected") from e
        except RedisClusterException:
            failure = Failure()
        self.assertIsInstance(_unavailable(failure).value, BrokerUnavailable)

    def test_clusterMistake(self) -> None:
        """
        Any other C{RedisClusterException} (keys of several slots in one
        command) is a bug, kept as it is.
        """
        failure = Failure(RedisClusterException("Keys in request don't hash to the same slot"))
        self.assertIs(_unavailable(failure), failure)


class RedisBrokerTests(TestCase):
    """
    Nodes on a single Redis of the test's own (one test stops it).
    """

    names = ChannelNames()

    def setUp(self) -> None:
        self.redis: Any = RedisServer()
        self.addCleanup(self.redis.cleanup)

    async def nodes(self, count: int = 2, **kwargs: Any) -> list[Node]:
        return await startedNodes(self, self.redis.url, count, **kwargs)

    async def eventually(self, operation: Any, attempts: int = 5) -> Any:
        """
        C{operation()}'s result, trying again while it fails with a
        connection error (at most C{attempts} times; on a cluster, also
        while it is not whole again).
        """
        for attempt in range(attempts):
            try:
                return await operation()
            except RedisError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def subscribedTo(self, *names: str) -> bool:
        return all(self.redis.subscribers(*names).values())

    def counted(self, uid: str, *nodes: Node) -> bool:
        """
        Whether each of C{nodes} has counted its sessions of C{uid} in Redis
        (after Redis confirmed its subscription): what a push's answer reads.
        """
        fields = _words(self.redis.command("HKEYS", f"realtime:{{u:{uid}}}:conns"))
        return {node.broker.node.encode() for node in nodes} <= set(fields)

    async def test_interfaces(self) -> None:
        """
        The broker is an L{IBroker} and watches its registry.
        """
        (node,) = await self.nodes(1)
        self.assertTrue(verifyObject(IBroker, node.broker))
        self.assertTrue(verifyObject(IBatchBroker, node.broker))
        self.assertTrue(verifyObject(IRegistryObserver, node.broker))

    async def test_pushToAUidOnAnotherNode(self) -> None:
        """
        A push taken by node A reaches the uid's sessions on node B, once,
        and is answered with how many connections hold the uid.
        """
        a, b = await self.nodes()
        alice = b.session("alice")
        alsoAlice = b.session("alice")
        await until(lambda: self.counted("alice", b))
        await b.broker._presence.heartbeat()
        result = await a.broker.publish(Envelope(ToUids(("alice",)), b"hello"))
        self.assertEqual((result.delivered, dict(result.uids)), (2, {"alice": 2}))
        await until(lambda: alice.texts == ["hello"] and alsoAlice.texts == ["hello"])

    async def test_startedHearsBroadcasts(self) -> None:
        """
        A started node is subscribed to the channel every node hears: a
        broadcast published as soon as it has started reaches it.
        """
        (node,) = await self.nodes(1)
        self.assertEqual(self.redis.subscribers("realtime:all"), {"realtime:all": 1})

    async def test_noFalseOk(self) -> None:
        """
        A push to a uid no node holds is answered as delivered nowhere.
        """
        a, b = await self.nodes()
        result = await a.broker.publish(Envelope(ToUids(("nobody",)), b"x"))
        self.assertEqual((result.delivered, dict(result.uids)), (0, {"nobody": 0}))

    async def test_batchAnsweredPerPush(self) -> None:
        """
        A batch of pushes (one read of the line port) is answered push by
        push as single pushes are, and delivered in order, once.
        """
        a, b = await self.nodes()
        alice = b.session("alice")
        await until(lambda: self.counted("alice", b))
        await b.broker._presence.heartbeat()
        outcomes = await a.broker.publishBatch(
            [Envelope(ToUids(uids), text) for uids, text in (
                (("alice",), b"1"), (("nobody",), b"2"), (("alice", "nobody", "alice"), b"3"),
                (("nobody",), b"4"), (("alice",), b"5"),
            )]  # fmt: skip
        )
        self.assertEqual(
            [(o.delivered, dict(o.uids)) for o in outcomes],
            [(1, {"alice": 1}), (0, {"nobody": 0}), (1, {"alice": 1, "nobody": 0}), (0, {"nobody": 0}), (1, {"alice": 1})],
        )
        await until(lambda: alice.texts == ["1", "3", "5"])

    async def test_pushNamesKeptBounded(self) -> None:
        """
        The names a node makes for the uids it pushes to are kept for the
        next push, up to a bound: past it they are made again, and every
        push still reaches its uid.
        """
        self.patch(redisbroker, "_PUSH_NAMES_KEPT", 2)
        a, b = await self.nodes()
        sessions = [b.session(f"u{i}") for i in range(3)]
        await until(lambda: all(self.counted(f"u{i}", b) for i in range(3)))
        for text in (b"1", b"2"):
            outcomes = await a.broker.publishBatch([Envelope(ToUids((f"u{i}",)), text) for i in range(3)])
            self.assertEqual([o.delivered for o in outcomes], [1, 1, 1])
            self.assertLessEqual(len(a.broker._pushNames), 2)
        await until(lambda: [s.texts for s in sessions] == [["1", "2"]] * 3)

    async def test_batchWithARefusedCommand(self) -> None:
        """
        A push whose command Redis refuses fails alone; the pushes around
        it are answered and delivered.
        """
        a, b = await self.nodes()
        alice = b.session("alice")
        await until(lambda: self.counted("alice", b))
        await b.broker._presence.heartbeat()
        # a key of the wrong type where mallory's connections would be
        self.redis.ownerOf("realtime:{u:mallory}:conns").command("SET", "realtime:{u:mallory}:conns", "x")
        outcomes = await a.broker.publishBatch(
            [Envelope(ToUids(uids), text) for uids, text in (
                (("alice",), b"1"), (("alice", "mallory"), b"2"), (("alice",), b"3"),
            )]  # fmt: skip
        )
        self.assertEqual((outcomes[0].delivered, outcomes[2].delivered), (1, 1))
        self.assertIsInstance(outcomes[1], Failure)
        self.assertIn("WRONGTYPE", outcomes[1].getErrorMessage())
        await until(lambda: alice.texts == ["1", "2", "3"])

    async def test_batchWithOtherTargets(self) -> None:
        """
        A batch with a broadcast in it is published one push at a time,
        each answered as it would be alone.
        """
        a, b = await self.nodes()
        alice = b.session("alice")
        await until(lambda: self.counted("alice", b))
        await b.broker._presence.heartbeat()
        outcomes = await a.broker.publishBatch([Envelope(ToUids(("alice",)), b"1"), Envelope(ToAll(), b"2")])
        self.assertEqual([o.delivered for o in outcomes], [1, 1])
        # in either order: on a cluster a uid's and everyone's messages
        # travel through different masters
        await until(lambda: sorted(alice.texts) == ["1", "2"])

    async def test_batchWhileRedisDown(self) -> None:
        """
        While Redis is unreachable, every push of a batch fails with the
        reason: never a false ok.
        """
        a, b = await self.nodes(probeInterval=0.2, probeTimeout=1.0)
        b.session("u1")
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        holder = self.redis.ownerOf("realtime:{u:u1}:push")
        holder.stop()
        self.addCleanup(self.redis.waitUntilReady)
        self.addCleanup(holder.start)
        batch = [Envelope(ToUids(("u1",)), b"lost"), Envelope(ToUids(("u1",)), b"lost too")]
        with self.assertRaises(BrokerUnavailable) as raised:
            await a.broker.publishBatch(batch)
        self.assertIn("broker unavailable (Redis: ", str(raised.exception))

    async def test_exactlyOnceOnThePublishingNode(self) -> None:
        """
        The publishing node's own sessions get the message once, through
        Redis like everyone's, in the order published.
        """
        a, b = await self.nodes()
        here, there = a.session("u1"), b.session("u1")
        await until(lambda: self.counted("u1", a, b))
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

    async def test_manyUidsAndChannelsExactlyOnce(self) -> None:
        """
        Pushes to many uids and publishes to many channels (spread over the
        masters of a cluster), taken by either node, reach each session
        exactly once, and each answer counts what holds it: ok where a
        session holds the uid, 0 (fail) where none does.
        """
        a, b = await self.nodes()
        held = [f"u{i}" for i in range(0, 16, 2)]
        sessions = {uid: (a if i % 2 else b).session(uid) for i, uid in enumerate(held)}
        rooms = [f"room{i}" for i in range(8)]
        for i, room in enumerate(rooms):
            (b if i % 2 else a).subscribe(sessions[held[i]], room)
        names = [self.names.uid(uid) for uid in held] + [self.names.channel(room) for room in rooms]
        await until(lambda: self.subscribedTo(*names))
        await until(lambda: all(int(self.redis.command("HLEN", f"realtime:{{ch:{r}}}:members")[1:-2]) == 1 for r in rooms))
        await a.broker._presence.heartbeat()
        await b.broker._presence.heartbeat()
        uids = [f"u{i}" for i in range(16)]
        pushes = [(a if i % 2 else b).broker.publish(Envelope(ToUids((uid,)), uid.encode())) for i, uid in enumerate(uids)]
        answers = {uid: (await d).delivered for uid, d in zip(uids, pushes, strict=True)}
        self.assertEqual(answers, {uid: int(uid in held) for uid in uids})
        published = [(b if i % 2 else a).broker.publish(Envelope(ToChannel(r), r.encode())) for i, r in enumerate(rooms)]
        self.assertEqual([(await d).delivered for d in published], [1] * len(rooms))
        expected = {uid: [uid] + ([rooms[i]] if i < len(rooms) else []) for i, uid in enumerate(held)}
        await until(lambda: all(sorted(sessions[u].texts) == sorted(expected[u]) for u in held))
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual({u: sorted(sessions[u].texts) for u in held}, {u: sorted(e) for u, e in expected.items()})

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
        await until(lambda: self.counted("u1", a, b))
        await a.broker._presence.heartbeat()
        await b.broker._presence.heartbeat()
        self.assertEqual(await a.broker.connectionCount("u1"), 2)
        self.assertEqual((await a.broker.presence("room"))["uids"], {"u1": 1})
        stats = await a.broker.stats()
        self.assertEqual((stats["nodes"], stats["connections"], stats["uids"]), (2, 2, 2))

    def listenerThrough(self, proxyPort: int, master: Any) -> Any:
        """
        A listener whose pub/sub connection to C{master} goes through the
        proxy on C{proxyPort}.
        """
        client = clientFor(f"redis://127.0.0.1:{proxyPort}/0")
        self.addCleanup(lambda: onLoop(loopOf(reactor), client.aclose()))
        return client

    async def test_countedOnceSubscribed(self) -> None:
        """
        A uid is counted online only once Redis has confirmed the node's
        subscription to it: while the node's pub/sub connection forwards
        nothing, its new session is not counted, and a push to it is
        answered as reaching nobody, truly; once the link has replaced the
        deaf connection, the session is counted, and a push is answered
        delivered and arrives.
        """
        a, b = await self.deafAfterStarting(self.names.uid("u1"))
        session = b.session("u1")
        # well inside the probe's 3 s: the deaf connection is still there
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(await a.broker.connectionCount("u1"), 0)
        self.assertEqual((await a.broker.publish(Envelope(ToUids(("u1",)), b"nobody"))).delivered, 0)
        await self.untilNot(0, lambda: a.broker.connectionCount("u1"))
        self.assertGreater(b.broker._link.reconnects, 0)
        self.assertEqual((await a.broker.publish(Envelope(ToUids(("u1",)), b"reached"))).delivered, 1)
        await until(lambda: session.texts == ["reached"])

    async def test_memberOnceSubscribed(self) -> None:
        """
        A channel's member is recorded only once Redis has confirmed the
        node's subscription to the channel, as a uid is counted: a publish
        meanwhile is answered as reaching nobody, truly; then as reaching the
        member, who gets it.
        """
        a, b = await self.deafAfterStarting(self.names.channel("room"))
        session = b.session("u1")
        b.subscribe(session, "room")
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual((await a.broker.presence("room"))["uids"], {})
        self.assertEqual((await a.broker.publish(Envelope(ToChannel("room"), b"nobody"))).delivered, 0)
        await self.untilNot({}, lambda: a.broker.presence("room").addCallback(lambda p: p["uids"]))
        self.assertEqual((await a.broker.publish(Envelope(ToChannel("room"), b"reached"))).delivered, 1)
        await until(lambda: session.texts[-1:] == ["reached"])

    async def deafAfterStarting(self, channel: str) -> list[Node]:
        """
        Two started nodes, the second's pub/sub connection to C{channel}'s
        master silenced (it forwards nothing until the probe finds it deaf,
        after 3 s, and the link replaces it).
        """
        master = self.redis.ownerOf(channel)
        proxy = SilenceableProxy(master.port)
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        listener = self.listenerThrough(port.getHost().port, master)
        a = Node(self, self.redis.url)
        b = Node(self, self.redis.url, listener=listener, probeInterval=0.2, probeTimeout=3.0)
        for node in (a, b):
            await node.broker.start()
        for node in (a, b):
            await node.broker._presence.heartbeat()
        proxy.silenceExisting()
        return [a, b]

    async def untilNot(self, value: Any, read: Any) -> None:
        """
        Wait until C{read()} (a Deferred) answers other than C{value}.
        """
        for _ in range(300):
            if await read() != value:
                return
            await task.deferLater(reactor, 0.05, lambda: None)
        self.fail(f"still {value!r}")

    async def test_redisDown(self) -> None:
        """
        While Redis (on a cluster: the uid's master) is unreachable a push
        fails with the reason (never a false ok), the broker says what is
        wrong; after Redis is back, it delivers again by itself.
        """
        a, b = await self.nodes(probeInterval=0.2, probeTimeout=1.0)
        session = b.session("u1")
        await until(lambda: self.subscribedTo("realtime:{u:u1}:push"))
        holder = self.redis.ownerOf("realtime:{u:u1}:push")
        holder.stop()
        self.addCleanup(self.redis.waitUntilReady)
        with self.assertRaises(BrokerUnavailable) as raised:
            await a.broker.publish(Envelope(ToUids(("u1",)), b"lost"))
        self.assertIn("broker unavailable (Redis: ", str(raised.exception))
        await until(lambda: a.broker.problem is not None)
        holder.start()
        self.redis.waitUntilReady()
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


    async def test_countedAgainOnceSubscribedAgain(self) -> None:
        """
        Redis (on a cluster: the uid's master) restarted without its data:
        once it has subscribed the node again, the node writes its counts
        back at once, not at its next heartbeat, so pushes to its sessions
        are answered delivered again.
        """
        a, b = await self.nodes(heartbeatInterval=60.0)
        session = b.session("u1")
        await until(lambda: self.counted("u1", b))
        holder = self.redis.ownerOf("realtime:{u:u1}:push")
        holder.restart()
        self.redis.waitUntilReady()
        await until(lambda: self.counted("u1", b), timeout=5)
        result = await self.eventually(lambda: a.broker.publish(Envelope(ToUids(("u1",)), b"back")))
        self.assertEqual(result.delivered, 1)
        await until(lambda: session.texts == ["back"])

    async def test_countedAgainAfterAQuietReconnect(self) -> None:
        """
        Redis lost its data and the node's pub/sub connection, and a
        listener whose redis-py retries reconnected inside a read: the
        second confirmation of the node's channels makes it heartbeat at
        once, which finds the node gone and writes its counts back.
        """
        listener = clientFor(self.redis.url, retry=Retry(NoBackoff(), 3), retry_on_error=[RedisConnectionError])
        self.addCleanup(lambda: onLoop(loopOf(reactor), listener.aclose()))
        a = Node(self, self.redis.url, heartbeatInterval=60.0)
        b = Node(self, self.redis.url, listener=listener, heartbeatInterval=60.0)
        for node in (a, b):
            await node.broker.start()
        session = b.session("u1")
        await until(lambda: self.counted("u1", b))
        self.redis.flush()
        self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: self.counted("u1", b), timeout=5)
        result = await a.broker.publish(Envelope(ToUids(("u1",)), b"back"))
        self.assertEqual(result.delivered, 1)
        await until(lambda: session.texts == ["back"])


class RedisClusterBrokerTests(RedisBrokerTests):
    """
    The same nodes on a Redis Cluster of three masters, shared by this
    module's tests: a uid's and a channel's messages travel by sharded
    pub/sub on the master of their slot.
    """

    def setUp(self) -> None:
        self.redis = sharedCluster()
        self.redis.flush()

    #: not run here: it leaves a master of the shared cluster down until its
    #: cleanup (test_redisDown covers a master down, and restarts it at once)
    test_batchWhileRedisDown = None  # type: ignore[assignment]
    #: not run here: redis-py's ClusterPubSub lets a read's connection error
    #: out whatever the retries (test_countedAgainOnceSubscribedAgain)
    test_countedAgainAfterAQuietReconnect = None  # type: ignore[assignment]

    def listenerThrough(self, proxyPort: int, master: Any) -> Any:
        # the cluster names its masters' addresses: redis-py's address_remap
        # sends the connections to this one master through the proxy
        def remap(address: tuple[str, int]) -> tuple[str, int]:
            return ("127.0.0.1", proxyPort) if address[1] == master.port else address

        client = clientFor(self.redis.url, address_remap=remap)
        self.addCleanup(lambda: onLoop(loopOf(reactor), client.aclose()))
        return client

    async def test_shardedOnTheOwningMaster(self) -> None:
        """
        A node's subscription to a uid is a sharded one on the master that
        owns the uid's slot, beside one probe channel per master; no classic
        subscription anywhere, and the broker publishes with C{SPUBLISH}.
        """
        (a,) = await self.nodes(1)
        self.assertEqual((a.broker.pubsub.publish, a.broker.pubsub.subscribe), ("SPUBLISH", "SSUBSCRIBE"))
        session = a.session("alice")
        owner = self.redis.ownerOf(self.names.uid("alice"))
        await until(lambda: self.names.uid("alice").encode() in _words(owner.command("PUBSUB", "SHARDCHANNELS")))
        for node in self.redis.nodes:
            self.assertEqual(_words(node.command("PUBSUB", "CHANNELS")), [])
            self.assertEqual(node.command("PUBLISH", self.names.uid("alice"), "classic"), b":0\r\n")
        await a.broker.publish(Envelope(ToUids(("alice",)), b"sharded"))
        await until(lambda: session.texts == ["sharded"])

