"""
The Redis URL forms other than plain C{redis://}, against real servers the
test starts: C{rediss://} with a certificate made here (and refused when the
certificate is not trusted), and C{redis+sentinel://} through a real Sentinel
across a real failover, for the store and the broker alike.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from realtime.broker.redis import RedisBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.redisio import loopOf, onLoop
from realtime.store.redis import RedisMessageStore
from realtime.testing import FakeSession
from realtime.values import Envelope, Position, ToUids
from tests.certificates import selfSigned
from tests.redisserver import RedisServer, _freePort, requireRedis, until
from tests.store_contract import KEEP, T0


class SentinelServer:
    """
    A real Sentinel (C{redis-server --sentinel}) watching one master, which
    it declares down after a second.
    """

    def __init__(self, masterPort: int, directory: str) -> None:
        self.port = _freePort()
        config = os.path.join(directory, "sentinel.conf")
        with open(config, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor mymaster 127.0.0.1 {masterPort} 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n"
            )
        self.process = subprocess.Popen(
            [requireRedis(), config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server --sentinel did not start")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def masterPort(self) -> int:
        answer = self.command("SENTINEL", "get-master-addr-by-name", "mymaster")
        return int(answer.split(b"\r\n")[-2])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def brokerNode(test: TestCase, url: str) -> tuple[RedisBroker, FakeSession]:
    """
    A started broker on C{url} whose node holds one session of uid C{u1}.
    """
    registry = SessionRegistry()
    broker = RedisBroker.fromURL(url, reactor, registry, Fanout(reactor), probeInterval=0.5, probeTimeout=2.0)
    test.addCleanup(broker.stop)
    session = FakeSession("u1")
    registry.add(session)
    return broker, session


async def eventually(operation: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """
    C{operation()}'s result, trying again while it fails (a failover under
    way answers with errors, never with a wrong result), up to C{timeout}.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await operation()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await until(lambda: True, step=0.2)


async def held(broker: RedisBroker, uid: str = "u1", timeout: float = 20.0) -> None:
    """
    Until Redis has what a node holding C{uid} sends it: the subscription
    to the uid's channel and the uid's connection count.  A push in the
    node's first moments races them (and is answered C{fail}, rightly), so
    a test of a push's answer waits for them first.
    """
    channel = broker._names.uid(uid)
    client = broker._link._client
    deadline = time.monotonic() + timeout
    while True:
        try:
            [(_, subscribers)] = await onLoop(loopOf(reactor), client.pubsub_numsub(channel))
            if subscribers and await broker.connectionCount(uid) == 1:
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{uid}'s subscription and count never reached Redis")
        await until(lambda: True, step=0.1)


class TLSTests(TestCase):
    """
    C{rediss://} with the CA given in the URL (C{?ssl_ca_certs=PATH}).
    """

    def setUp(self) -> None:
        self.key, self.certificate = selfSigned()
        self.tlsPort = _freePort()
        self.redis = RedisServer(
            "--tls-port", str(self.tlsPort), "--tls-cert-file", self.certificate, "--tls-key-file", self.key,
            "--tls-ca-cert-file", self.certificate, "--tls-auth-clients", "no",
        )  # fmt: skip
        self.addCleanup(self.redis.cleanup)
        self.url = f"rediss://127.0.0.1:{self.tlsPort}/0?ssl_ca_certs={self.certificate}"

    async def test_storeOverTLS(self) -> None:
        """
        History kept and read back over TLS.
        """
        store = RedisMessageStore.fromURL(self.url, reactor)
        self.addCleanup(store.close)
        stored = await store.append("news", b'"hi"', False, KEEP, T0)
        history = await store.history("news", Position(stored.epoch, 0), T0)
        self.assertEqual([m.payload for m in history.messages], [b'"hi"'])

    async def test_brokerOverTLS(self) -> None:
        """
        A push published and received over TLS, answered with its count.
        """
        broker, session = brokerNode(self, self.url)
        await broker.start()
        await held(broker)
        result = await eventually(lambda: broker.publish(Envelope(ToUids(("u1",)), b"over tls")))
        self.assertEqual(result.delivered, 1)
        await until(lambda: session.texts == ["over tls"])

    async def test_untrustedCertificateRefused(self) -> None:
        """
        Without the CA the server's certificate is not trusted: the command
        fails with the reason instead of talking to an unverified Redis.
        """
        store = RedisMessageStore.fromURL(f"rediss://127.0.0.1:{self.tlsPort}/0", reactor)
        self.addCleanup(store.close)
        with self.assertRaises(Exception) as caught:
            await store.append("news", b"1", False, KEEP, T0)
        self.assertIn("certificate verify failed", str(caught.exception))


class SentinelTests(TestCase):
    """
    C{redis+sentinel://}: the master Sentinel names, found again after a
    failover, with the history that was replicated to it.
    """

    def setUp(self) -> None:
        self.master = RedisServer()
        self.addCleanup(self.master.cleanup)
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port))
        self.addCleanup(self.replica.cleanup)
        self.sentinel = SentinelServer(self.master.port, self.master.directory)
        self.addCleanup(self.sentinel.stop)
        self.url = f"redis+sentinel://127.0.0.1:{self.sentinel.port}/mymaster/0"

    def replicated(self) -> bool:
        info = self.replica.command("INFO", "replication")
        return b"master_link_status:up" in info and b"master_sync_in_progress:0" in info

    async def failOver(self) -> None:
        await until(self.replicated, timeout=20)
        # the replica has everything written so far before it is promoted
        self.assertTrue(self.master.command("WAIT", "1", "5000").startswith(b":1"))
        await until(lambda: b"+OK" in self.sentinel.command("SENTINEL", "FAILOVER", "mymaster"), timeout=20)
        await until(lambda: self.sentinel.masterPort() == self.replica.port, timeout=20)

    async def test_storeFollowsFailover(self) -> None:
        """
        A position taken before the failover resumes after it, on the new
        master, in the same epoch.
        """
        store = RedisMessageStore.fromURL(self.url, reactor)
        self.addCleanup(store.close)
        first = await store.append("news", b"1", False, KEEP, T0)
        await self.failOver()
        second = await eventually(lambda: store.append("news", b"2", False, KEEP, T0))
        self.assertEqual((second.epoch, second.offset), (first.epoch, 2))
        history = await store.history("news", Position(first.epoch, 1), T0)
        self.assertEqual(([m.payload for m in history.messages], history.recovered), ([b"2"], True))

    async def test_brokerFollowsFailover(self) -> None:
        """
        After the failover the broker publishes on the new master and its
        pub/sub link listens there: a push reaches the node's session again.
        """
        broker, session = brokerNode(self, self.url)
        await broker.start()
        await held(broker)
        result = await eventually(lambda: broker.publish(Envelope(ToUids(("u1",)), b"before")))
        self.assertEqual(result.delivered, 1)
        await self.failOver()

        async def pushAfter() -> Any:
            result = await broker.publish(Envelope(ToUids(("u1",)), b"after"))
            if result.delivered != 1:
                raise AssertionError(f"not delivered yet: {result}")
            return result

        await eventually(pushAfter, timeout=30)
        await until(lambda: "after" in session.texts, timeout=10)
        self.assertEqual(session.texts[0], "before")


class PasswordTests(TestCase):
    """
    C{redis://:PASSWORD@HOST:PORT/DB}: the password is sent, and a wrong
    one is refused with the reason.
    """

    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        self.assertIn(b"+OK", self.redis.command("CONFIG", "SET", "requirepass", "s3cret"))

    async def test_password(self) -> None:
        store = RedisMessageStore.fromURL(f"redis://:s3cret@127.0.0.1:{self.redis.port}/0", reactor)
        self.addCleanup(store.close)
        stored = await store.append("news", b"1", False, KEEP, T0)
        self.assertEqual(stored.offset, 1)

    async def test_wrongPassword(self) -> None:
        store = RedisMessageStore.fromURL(f"redis://:wrong@127.0.0.1:{self.redis.port}/0", reactor)
        self.addCleanup(store.close)
        with self.assertRaises(Exception) as caught:
            await store.append("news", b"1", False, KEEP, T0)
        self.assertIn("password", str(caught.exception).lower())
