"""
Tests for L{realtime.broker.redispubsub}: subscriptions that follow the
node's needs, and a link that heals itself, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from realtime.broker.redispubsub import PubSubLink
from realtime.redisio import loopOf, onLoop
from tests.redisserver import RedisServer, until


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
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        self.got: list[tuple[str, bytes]] = []

    def link(self, url: str | None = None, **kwargs: Any) -> PubSubLink:
        client = aioredis.Redis.from_url(self.redis.url, protocol=3)
        listener = aioredis.Redis.from_url(url or self.redis.url, protocol=3)
        link = PubSubLink(
            client, listener.pubsub(), reactor, lambda c, d: self.got.append((c, d)), probeChannel="probe:n1", **kwargs
        )
        self.addCleanup(lambda: onLoop(loopOf(reactor), client.aclose()))
        self.addCleanup(lambda: onLoop(loopOf(reactor), listener.aclose()))
        self.addCleanup(link.stop)
        return link

    def publish(self, channel: str, data: bytes) -> Deferred[Any]:
        async def send() -> Any:
            client = aioredis.Redis.from_url(self.redis.url)
            try:
                return await client.publish(channel, data)
            finally:
                await client.aclose()

        return onLoop(loopOf(reactor), send())

    def channels(self) -> set[bytes]:
        raw = self.redis.command("PUBSUB", "CHANNELS")
        return {line for line in raw.split(b"\r\n") if line and line[:1] not in b"*$"}

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
        await until(lambda: self.channels() == {b"probe:n1", b"u:1", b"ch:news"})
        link.unwant("u:1")
        link.unwant("ch:news")
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.channels(), {b"probe:n1", b"u:1"})
        link.unwant("u:1")
        await until(lambda: self.channels() == {b"probe:n1"})

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

    async def test_clientKilled(self) -> None:
        """
        A pub/sub connection Redis closes (C{CLIENT KILL TYPE pubsub}) is
        reconnected and subscribed again.
        """
        link = self.link()
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: b"u:1" in self.channels())
        await self.publish("u:1", b"again")
        await until(lambda: ("u:1", b"again") in self.got)

    async def test_halfOpenDetected(self) -> None:
        """
        A pub/sub connection that stays up but delivers nothing is found by
        the probe within its timeout, reported, and replaced.
        """
        proxy = SilenceableProxy(self.redis.port)
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        link = self.link(url=f"redis://127.0.0.1:{port.getHost().port}/0", probeInterval=0.2, probeTimeout=1.0)
        await link.start()
        link.want("u:1")
        await until(lambda: b"u:1" in self.channels())
        proxy.silenceExisting()
        await self.publish("u:1", b"lost in the proxy")
        await until(lambda: link.reconnects == 1, timeout=5)
        self.assertIn("delivered nothing", link.lastDeafness or "")
        # still the reason while the connection is replaced (/readyz shows
        # it), not the "connection lost" of the drop the link made itself
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertIn("delivered nothing", link.problem or "")
        await until(lambda: link.problem is None, timeout=5)
        await self.publish("u:1", b"heard")
        await until(lambda: ("u:1", b"heard") in self.got)
