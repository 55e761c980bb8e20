"""
Tests for L{realtime.broker.redispubsub}: subscriptions that follow the
node's needs, and a link that heals itself, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any, Callable

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from realtime.broker import redisslots
from realtime.broker.redispubsub import PubSubLink
from realtime.redisio import clientFor, loopOf, onLoop, pubsubCommands
from tests.redisserver import RedisServer, _words, sharedCluster, until


class _SilenceableServerSide(portforward.ProxyClient):
    def dataReceived(self, data: bytes) -> None:
        if not self.factory.silenced:  # type: ignore[attr-defined]
            super().dataReceived(data)


class _SilenceableClientFactory(portforward.ProxyClientFactory):
    protocol = _SilenceableServerSide
    silenced = False


class _SilenceableProxy(portforward.ProxyServer):
    clientProtocolFactory = _SilenceableClientFactory

    def connectionMade(self) -> None:
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        super().connectionMade()


class SilenceableProxy(portforward.ProxyFactory):
    """
    A TCP proxy to Redis that can stop forwarding what Redis sends on the
    connections it holds - a half-open link, as a NAT or proxy that dropped
    the flow makes one - while new connections work.
    """

    protocol = _SilenceableProxy

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.connections: list[Any] = []

    def silenceExisting(self) -> None:
        for connection in self.connections:
            peer = connection.peer
            if peer is not None:
                peer.factory.silenced = True
        self.connections = []




class PubSubLinkTests(TestCase):
    """
    The link on a single Redis of the test's own (some tests stop it).
    """

    def setUp(self) -> None:
        self.redis: Any = RedisServer()
        self.addCleanup(self.redis.cleanup)
        self.got: list[tuple[str, bytes]] = []

    def client(self, url: str | None = None, **kwargs: Any) -> Any:
        """
        A client of the Redis under test (or of C{url}); C{kwargs} for
        redis-py.
        """
        client = clientFor(url or self.redis.url, **kwargs)
        self.addCleanup(lambda: onLoop(loopOf(reactor), client.aclose()))
        return client

    def proxiedListener(self, proxyPort: int, master: Any) -> Any:
        """
        A listener whose connection to C{master} goes through the proxy.
        """
        return self.client(url=f"redis://127.0.0.1:{proxyPort}/0")

    def link(self, listener: Any = None, **kwargs: Any) -> PubSubLink:
        link = PubSubLink(
            self.client(),
            listener or self.client(),
            reactor,
            lambda c, d: self.got.append((c, d)),
            probeChannel="probe:n1",
            **kwargs,
        )
        self.addCleanup(link.stop)
        return link

    def publish(self, channel: str, data: bytes) -> Deferred[Any]:
        async def send() -> Any:
            client = clientFor(self.redis.url)
            try:
                return await client.execute_command(pubsubCommands(client).publish, channel, data)
            finally:
                await client.aclose()

        return onLoop(loopOf(reactor), send())

    def channels(self) -> set[bytes]:
        return self.redis.channels()

    def subscribed(self, link: PubSubLink, *channels: str) -> set[bytes]:
        return {c.encode() for c in link.probeChannels() | set(channels)}

    async def test_subscribedToWhatIsWanted(self) -> None:
        """
        The node is subscribed to what its sessions want, each once, and not
        to what they stopped wanting.
        """
        link = self.link()
        await link.start()
        link.want("u:1")
        link.want("u:1")
        link.want("ch:news")
        await until(lambda: self.channels() == self.subscribed(link, "u:1", "ch:news"))
        self.assertEqual(self.redis.subscribers("u:1", "ch:news"), {"u:1": 1, "ch:news": 1})
        link.unwant("u:1")
        link.unwant("ch:news")
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.channels(), self.subscribed(link, "u:1"))
        link.unwant("u:1")
        await until(lambda: self.channels() == self.subscribed(link))

    async def test_subscribedToOnceConfirmed(self) -> None:
        """
        C{subscribedTo} fires once Redis has confirmed the subscription (at
        once after that, and at once for a channel not wanted), and for a
        channel no longer wanted before its confirmation came.
        """
        link = self.link()
        await link.start()
        self.assertTrue(link.subscribedTo("{u:9}:push").called)
        link.want("{u:1}:push")
        first = link.subscribedTo("{u:1}:push")
        self.assertFalse(first.called)
        await first
        self.assertIn(b"{u:1}:push", self.channels())
        self.assertTrue(link.subscribedTo("{u:1}:push").called)
        link.want("{u:2}:push")
        dropped = link.subscribedTo("{u:2}:push")
        link.unwant("{u:2}:push")
        self.assertTrue(dropped.called)

    async def test_delivers(self) -> None:
        """
        A message on a wanted channel is delivered with its channel name.
        """
        link = self.link()
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        self.assertEqual(await self.publish("u:1", b"hello"), 1)
        self.assertEqual(await self.publish("u:2", b"nobody"), 0)
        await until(lambda: self.got == [("u:1", b"hello")])

    async def test_redisRestarted(self) -> None:
        """
        After Redis restarts, the link says what is wrong meanwhile, then
        reconnects by itself and is subscribed again to what it had.
        """
        link = self.link(probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        self.redis.stop()
        await until(lambda: link.problem is not None)
        self.redis.start()
        await until(lambda: b"u:1" in self.channels())
        await self.publish("u:1", b"after")
        await until(lambda: ("u:1", b"after") in self.got)
        await until(lambda: link.problem is None)

    async def lostLink(self, channel: str) -> tuple[PubSubLink, list[bool], Any]:
        """
        A link subscribed to C{channel}, once it has seen its connection to
        the server holding C{channel} fail (the server stopped); with the
        list its C{resubscribed} calls go to, and the server, to start.
        """
        calls: list[bool] = []
        link = self.link(probeInterval=0.2, probeTimeout=1.0, resubscribed=calls.append)
        await link.start()
        link.want(channel)
        await link.subscribedTo(channel)
        server = self.redis.ownerOf(channel)
        server.stop()
        self.addCleanup(self.redis.waitUntilReady)
        await until(lambda: "connection lost" in (link.problem or ""))
        return link, calls, server

    async def test_unconfirmedUntilSubscribedAgain(self) -> None:
        """
        Once its connection is lost (on a cluster: to the channel's master),
        the link no longer says it is subscribed to what it was (a uid's
        count waits on that) until Redis confirms the subscription again;
        the link says what it waits for meanwhile, and calls
        C{resubscribed} after.
        """
        link, calls, server = await self.lostLink("u:1")
        subscribed, settled = link.subscribedTo("u:1"), link.settled()
        self.assertFalse(subscribed.called)
        self.assertFalse(settled.called)
        self.assertIn("subscriptions not confirmed again since a reconnect: 1", link.problem or "")
        self.assertEqual(calls, [])
        server.start()
        self.redis.waitUntilReady()
        await subscribed
        await settled
        self.assertIn(b"u:1", self.channels())
        await until(lambda: calls == [True])
        await until(lambda: link.problem is None)

    async def test_missedResubscriptionMadeAgain(self) -> None:
        """
        A lost channel still unconfirmed when its connection's probe comes
        back is one redis-py did not subscribe again: the link subscribes to
        it itself, rather than stay deaf to it, and settles.  (The link is
        told of a drop that did not happen, so nothing resubscribes.)
        """
        link = self.link(probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        link.want("u:1")
        await link.subscribedTo("u:1")
        # out of the confirmation's turn, where the test would run inside it
        await task.deferLater(reactor, 0, lambda: None)
        link._dropped(link._shards.owner("u:1") or "")
        settled = link.settled()
        self.assertFalse(settled.called)
        await until(lambda: settled.called, timeout=5)
        self.assertIsNone(link.problem)
        await self.publish("u:1", b"heard")
        await until(lambda: ("u:1", b"heard") in self.got)

    async def droppedHolding(
        self, link: PubSubLink, wanted: list[str], kept: set[str]
    ) -> tuple[str, Callable[[str], str | None], list[str]]:
        """
        Start C{link} wanting C{wanted}, once confirmed keep only C{kept},
        then tell it the connection holding C{u:1} dropped (it did not).

        @return: that connection's name, the shards' C{owner}, and the
            channels whose owner was asked for from the drop on.
        """
        await link.start()
        for channel in wanted:
            link.want(channel)
        for channel in wanted:
            await link.subscribedTo(channel)
        for channel in set(wanted) - kept:
            link.unwant(channel)
        await task.deferLater(reactor, 0, lambda: None)
        shards: Any = link._shards
        owner = shards.owner
        name = owner("u:1") or ""
        computed: list[str] = []
        self.patch(shards, "owner", lambda channel: computed.append(channel) or owner(channel))
        link._dropped(name)
        return name, owner, computed

    async def test_missedFoundWithoutSlots(self) -> None:
        """
        The channels a connection's probe finds missed are those lost with
        that connection, known without the slot of each lost channel (on a
        Cluster with a master down, every probe of the other masters
        computed it), and the link still subscribes them again.  (The link
        is told of a drop that did not happen, so nothing resubscribes.)
        """
        link = self.link(probeInterval=0.2, probeTimeout=1.0)
        wanted = [f"u:{i}" for i in range(50)]
        name, owner, computed = await self.droppedHolding(link, wanted, set(wanted))
        settled = link.settled()
        self.assertFalse(settled.called)
        await until(lambda: settled.called, timeout=5)
        self.assertEqual([channel for channel in computed if channel in wanted], [])
        self.assertIsNone(link.problem)
        await self.publish("u:1", b"heard")
        await until(lambda: ("u:1", b"heard") in self.got)

    async def test_droppedTakesWhatItConfirmed(self) -> None:
        """
        A connection that drops takes away the channels it confirmed, and
        only those (on a Cluster: its master's), known without computing
        the slot of each channel the node holds, which at 100,000 channels
        was one reactor turn of some 100 ms per drop.  (The link is told of
        a drop that did not happen.)
        """
        link = self.link()
        wanted = [f"u:{i}" for i in range(300)]
        name, owner, computed = await self.droppedHolding(link, wanted, set(wanted[1:]))
        self.assertEqual(computed, [])
        self.assertEqual(set(link._confirms.lost), {c for c in wanted[1:] if owner(c) == name})

    async def test_unwantedWhileLost(self) -> None:
        """
        A lost channel no session wants any more is not waited for: the
        link settles without it, and does not call C{resubscribed}, since
        Redis subscribed nothing again.
        """
        link, calls, server = await self.lostLink("u:1")
        settled = link.settled()
        link.unwant("u:1")
        self.assertTrue(settled.called)
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(calls, [])
        server.start()
        self.redis.waitUntilReady()
        await until(lambda: link.problem is None)

    async def test_stoppedWhileSubscribingFails(self) -> None:
        """
        A link stopped while its subscriptions fail (Redis unreachable)
        leaves no retry behind it.
        """
        link = self.link()
        await link.start()
        self.redis.stop()
        # until the reader has seen the connection close, a SUBSCRIBE written
        # into it still succeeds (redis-py does not wait for its answer)
        await until(lambda: "connection lost" in (link.problem or ""), timeout=10)
        link.want("u:1")
        await until(lambda: "subscribing failed" in (link.problem or ""), timeout=10)
        await link.stop()
        self.assertEqual([c for c in reactor.getDelayedCalls() if "PubSubLink._sync" in repr(c)], [])

    async def test_replacedOnTheSameChannel(self) -> None:
        """
        A connection gone and a new one probed on the same channel in one
        topology change (a replica promoted in place of a dead master owns
        its slots, so its probe channel is the dead master's): the new one's
        probes are heard, and none is delivered as a message.
        """
        link = self.link(probeInterval=0.1, probeTimeout=0.5)
        await link.start()
        gone = next(iter(link._probed))
        channel = link._probed[gone].channel
        link._changed(({"promoted": channel}, {gone}))
        self.assertIn(channel, link.probeChannels())
        # past the probe timeout, so a probe never heard would have been
        # called deaf; then heard, however slowly the machine runs
        await task.deferLater(reactor, 1.0, lambda: None)
        await until(lambda: link.problem is None)
        self.assertEqual([c for c, _ in self.got if c == channel], [])

    async def test_clientKilled(self) -> None:
        """
        A pub/sub connection Redis closes (C{CLIENT KILL TYPE pubsub}) is
        reconnected and subscribed again, and the link says so.
        """
        calls: list[bool] = []
        link = self.link(resubscribed=calls.append)
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        self.redis.ownerOf("u:1").command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: b"u:1" in self.channels())
        await self.publish("u:1", b"again")
        await until(lambda: ("u:1", b"again") in self.got)
        await until(lambda: calls == [True])

    async def test_reconnectedInsideARead(self) -> None:
        """
        A listener whose redis-py retries reconnects inside the read that
        failed, and subscribes again without the link seeing a failure: the
        second confirmation of a channel tells it, and it says so.
        """
        calls: list[bool] = []
        listener = self.client(retry=Retry(NoBackoff(), 3), retry_on_error=[RedisConnectionError])
        link = self.link(listener, resubscribed=calls.append)
        await link.start()
        link.want("u:1")
        await link.subscribedTo("u:1")
        self.redis.ownerOf("u:1").command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: calls != [])
        self.assertEqual(calls, [False])
        await self.publish("u:1", b"again")
        await until(lambda: ("u:1", b"again") in self.got)

    async def test_halfOpenDetected(self) -> None:
        """
        A pub/sub connection that stays up but delivers nothing is found by
        the probe within its timeout, reported, and replaced.
        """
        master = self.redis.ownerOf("u:1")
        proxy = SilenceableProxy(master.port)
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        listener = self.proxiedListener(port.getHost().port, master)
        link = self.link(listener, probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        proxy.silenceExisting()
        await self.publish("u:1", b"lost in the proxy")
        # polled well inside the probe interval: the new connection's first
        # probe, one interval after the deafness, ends the reason
        await until(lambda: link.reconnects == 1, timeout=5, step=0.005)
        self.assertIn("delivered nothing", link.lastDeafness or "")
        # the reason while the connection is replaced (/readyz shows it),
        # every time it is looked at, never the "connection lost" of the
        # drop the link made itself
        seen: list[str | None] = []
        await until(lambda: seen.append(link.problem) or link.problem is None, timeout=5, step=0.005)
        reasons = [problem for problem in seen if problem is not None]
        self.assertTrue(reasons, seen)
        for problem in reasons:
            self.assertIn("delivered nothing", problem)
        await self.publish("u:1", b"heard")
        await until(lambda: ("u:1", b"heard") in self.got)


class ClusterPubSubLinkTests(PubSubLinkTests):
    """
    The same link on a Redis Cluster of three masters, shared by the tests
    of this module: sharded subscriptions, one connection per master, each
    probed on its own.
    """

    def setUp(self) -> None:
        self.redis = sharedCluster()
        self.redis.flush()
        self.got = []

    def proxiedListener(self, proxyPort: int, master: Any) -> Any:
        # the cluster names its masters' addresses: redis-py's address_remap
        # sends the connections to this one master through the proxy
        def remap(address: tuple[str, int]) -> tuple[str, int]:
            return ("127.0.0.1", proxyPort) if address[1] == master.port else address

        return self.client(address_remap=remap)

    #: not run here: it stops its Redis, and the cluster is shared by this
    #: module's tests (PubSubLinkTests runs it on a Redis of its own)
    test_stoppedWhileSubscribingFails = None  # type: ignore[assignment]
    # a made-up topology change the real one would undo at the next probe
    # round; test_cluster_failover.py promotes a real replica instead
    test_replacedOnTheSameChannel = None  # type: ignore[assignment]
    # redis-py's ClusterPubSub lets a read's connection error out whatever
    # the listener's retries: the link sees it fail (test_clientKilled)
    test_reconnectedInsideARead = None  # type: ignore[assignment]

    async def test_redisRestarted(self) -> None:
        """
        One master restarted (it keeps its slots, loses its data): the link
        names that master's trouble meanwhile, reconnects by itself with
        backoff and is subscribed there again; the other masters' channels
        deliver all along.
        """
        link = self.link(probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        down = "{u:1}:push"
        master = self.redis.ownerOf(down)
        up = next(c for c in (f"{{u:{i}}}:push" for i in range(2, 99)) if self.redis.ownerOf(c) is not master)
        link.want(down)
        link.want(up)
        await until(lambda: {down.encode(), up.encode()} <= self.channels())
        master.stop()
        self.addCleanup(self.redis.waitUntilReady)
        await until(lambda: f"master 127.0.0.1:{master.port}: " in (link.problem or ""))
        master.start()
        self.redis.waitUntilReady()
        await until(lambda: {down.encode(), up.encode()} <= self.channels())
        for channel in (down, up):
            self.assertEqual(await self.publish(channel, b"after"), 1)
        await until(lambda: {(down, b"after"), (up, b"after")} <= set(self.got))
        await until(lambda: link.problem is None)

    async def test_oneProbePerMaster(self) -> None:
        """
        Each master holds one probe channel of the node's, so each master's
        connection is proved alive on its own.
        """
        link = self.link()
        await link.start()
        self.assertEqual(len(link.probeChannels()), 3)
        for node in self.redis.nodes:
            self.assertEqual(len(set(_words(node.command("PUBSUB", "SHARDCHANNELS"))) & self.subscribed(link)), 1)

    async def test_sharded(self) -> None:
        """
        A wanted channel is a sharded subscription on the master that owns
        its slot, and nothing else: a classic PUBLISH does not reach it.
        """
        link = self.link()
        await link.start()
        link.want("{u:1}:push")
        await until(lambda: b"{u:1}:push" in set(_words(self.redis.ownerOf("{u:1}:push").command("PUBSUB", "SHARDCHANNELS"))))
        for node in self.redis.nodes:
            self.assertEqual(_words(node.command("PUBSUB", "CHANNELS")), [])
            node.command("PUBLISH", "{u:1}:push", "classic")
        self.assertEqual(await self.publish("{u:1}:push", b"sharded"), 1)
        await until(lambda: self.got == [("{u:1}:push", b"sharded")])

    async def test_killedOnOneMaster(self) -> None:
        """
        Channels on every master, many slots each; one master closes the
        node's pub/sub connection (C{CLIENT KILL TYPE pubsub}): that
        connection is made again and subscribed again to all of its
        channels, slot by slot, within the probe timeout, and every channel
        on every master delivers.
        """
        link = self.link(probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        channels = [f"{{u:{i}}}:push" for i in range(30)]
        for channel in channels:
            link.want(channel)
        await until(lambda: {c.encode() for c in channels} <= self.channels())
        master = self.redis.ownerOf(channels[0])
        mine = [c for c in channels if self.redis.ownerOf(c) is master]
        self.assertGreater(len({key_slot(c.encode()) for c in mine}), 1)
        master.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: {c.encode() for c in channels} <= self.channels(), timeout=1.0)
        for channel in channels:
            self.assertEqual(await self.publish(channel, channel.encode()), 1)
        await until(lambda: sorted(self.got) == sorted((c, c.encode()) for c in channels))
        await until(lambda: link.problem is None)

    async def linkWanting(self, channel: str) -> PubSubLink:
        """
        A link on one client for commands and pub/sub alike (as a node
        has), started, subscribed to C{channel}.
        """
        client = self.client()
        link = PubSubLink(client, client, reactor, lambda c, d: self.got.append((c, d)), probeChannel="probe:n1",
                          probeInterval=0.2, probeTimeout=1.0)
        self.addCleanup(link.stop)
        await link.start()
        link.want(channel)
        await until(lambda: channel.encode() in self.channels())
        return link

    async def test_slotMoved(self) -> None:
        """
        A resharding moves the slot of a wanted channel, and of a probe
        channel, to another master: Redis unsubscribes the node there, and
        the node follows both to their new master, where the channel
        delivers again and each master is still probed on its own.
        """
        channel = "{u:1}:push"
        link = await self.linkWanting(channel)
        source = self.redis.ownerOf(channel)
        target = next(n for n in self.redis.nodes if n is not source)
        probe = next(c for c in link.probeChannels() if self.redis.ownerOf(c) is source)
        for slot in {key_slot(channel.encode()), key_slot(probe.encode())}:
            self.redis.moveSlot(slot, target)
            self.addCleanup(self.redis.moveSlot, slot, source)
        await until(lambda: channel.encode() in set(_words(target.command("PUBSUB", "SHARDCHANNELS"))))
        self.assertEqual(await self.publish(channel, b"moved"), 1)
        await until(lambda: (channel, b"moved") in self.got)
        await until(lambda: probe not in link.probeChannels())
        self.assertEqual({self.redis.ownerOf(c).port for c in link.probeChannels()}, {n.port for n in self.redis.nodes})
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertEqual((link.problem, link.reconnects), (None, 0))

    async def test_movedWhileTopologyStale(self) -> None:
        """
        Redis unsubscribes the node from a wanted channel whose slot moved,
        but the first slots read after that still names the old master (the
        node asked has not heard of the move yet, as after C{CLUSTER
        FAILOVER}): the link reads again until the channel has a new owner,
        and follows it there, instead of staying unsubscribed.
        """
        channel = "{u:1}:push"
        link = await self.linkWanting(channel)
        source = self.redis.ownerOf(channel)
        target = next(n for n in self.redis.nodes if n is not source)
        shards = link._shards
        reads = shards.rehome
        stale = [True]

        async def staleOnce() -> None:
            if stale:
                stale.pop()
                return
            await reads()

        self.patch(shards, "rehome", staleOnce)
        slot = key_slot(channel.encode())
        self.redis.moveSlot(slot, target)
        self.addCleanup(self.redis.moveSlot, slot, source)
        await until(lambda: channel.encode() in set(_words(target.command("PUBSUB", "SHARDCHANNELS"))), timeout=5)
        self.assertEqual(stale, [])
        self.assertEqual(await self.publish(channel, b"moved"), 1)
        await until(lambda: (channel, b"moved") in self.got)

    async def test_movedAwayAndBack(self) -> None:
        """
        A wanted channel's slot moved to another master and straight back:
        Redis unsubscribed the node, and whether the link follows the move
        or reads the slots only once they are back home, where redis-py
        still believes it holds the subscription, the channel is subscribed
        again on its master and delivers.
        """
        self.patch(redisslots, "_REHOME_TRIES", 2)
        channel = "{u:1}:push"
        await self.linkWanting(channel)
        source = self.redis.ownerOf(channel)
        target = next(n for n in self.redis.nodes if n is not source)
        slot = key_slot(channel.encode())
        self.redis.moveSlot(slot, target)
        self.redis.moveSlot(slot, source)

        async def delivers() -> bool:
            return bool(await self.publish(channel, b"home"))

        deadline = reactor.seconds() + 5
        while not await delivers():
            self.assertLess(reactor.seconds(), deadline, "the channel was not subscribed again")
            await task.deferLater(reactor, 0.1, lambda: None)
        await until(lambda: (channel, b"home") in self.got)

    async def test_halfOpenOnOneMaster(self) -> None:
        """
        One master's connection deaf (a proxy that stops forwarding) while
        the others work: the probe finds that one within its timeout, the
        problem names its master meanwhile, and only it is replaced; the
        other masters' channels deliver all along.
        """
        deaf = "{u:1}:push"
        master = self.redis.ownerOf(deaf)
        alive = next(c for c in (f"{{u:{i}}}:push" for i in range(2, 99)) if self.redis.ownerOf(c) is not master)
        proxy = SilenceableProxy(master.port)
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        link = self.link(self.proxiedListener(port.getHost().port, master), probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        link.want(deaf)
        link.want(alive)
        await until(lambda: {deaf.encode(), alive.encode()} <= self.channels())
        proxy.silenceExisting()
        await self.publish(alive, b"still heard")
        await until(lambda: (alive, b"still heard") in self.got)
        problems: list[str] = []

        def reported() -> bool:
            if link.problem is not None:
                problems.append(link.problem)
            return bool(problems)

        await until(reported, timeout=5)
        self.assertIn(f"master 127.0.0.1:{port.getHost().port}: ", problems[0])
        await until(lambda: link.reconnects == 1, timeout=5)
        await until(lambda: link.problem is None, timeout=5)
        await self.publish(deaf, b"heard again")
        await until(lambda: (deaf, b"heard again") in self.got)
        self.assertEqual(link.reconnects, 1)
