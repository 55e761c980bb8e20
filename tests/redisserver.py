"""
Real C{redis-server} processes for the tests, on ports the kernel picks -
never the machine's own Redis on 6379, which other programs use.

Without the binary the tests that need one are skipped, or fail when
C{REALTIME_REQUIRE_REDIS} is set (as C{.ci/run} sets it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest
from twisted.internet import reactor, task

__all__ = ["RedisServer", "RedisClusterServers", "requireRedis", "sharedServer", "sharedCluster", "until"]


def requireRedis(binary: str = "redis-server") -> str:
    """
    The path of C{binary} (C{redis-server}, C{redis-cli}); else skip, or
    fail with C{REALTIME_REQUIRE_REDIS}.
    """
    path = shutil.which(binary)
    if path is None:
        problem = f"{binary} is not installed (apt-get install redis-server)"
        if os.environ.get("REALTIME_REQUIRE_REDIS"):
            pytest.fail(f"REALTIME_REQUIRE_REDIS is set but {problem}")
        pytest.skip(f"{problem}; set REALTIME_REQUIRE_REDIS to fail instead")
    return path


def _isFree(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _freePort(clusterBus: bool = False) -> int:
    """
    A port nobody listens on; with C{clusterBus}, one whose cluster bus port
    (the port + 10000, which must be a valid port too) is free as well.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not clusterBus or (port + 10000 <= 65535 and _isFree(port + 10000)):
            return port


class RedisServer:
    """
    One C{redis-server} keeping nothing on disk, on 127.0.0.1 and a free port.

    Started by the constructor and stopped by L{stop}; L{restart} keeps the
    port, so clients can reconnect to "the same Redis" after an outage.
    """

    def __init__(self, *extra: str) -> None:
        self.binary = requireRedis()
        self.extra = extra
        self.directory = tempfile.mkdtemp(prefix="realtime-redis-")
        self.port = _freePort(clusterBus="--cluster-enabled" in extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """
        Start the server and wait until it answers.
        """
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", self.directory, *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {command}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def command(self, *words: str) -> bytes:
        """
        One command in Redis's inline protocol, answered raw (for the tests'
        own checks and for C{FLUSHALL} between tests).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def flush(self) -> None:
        self.command("FLUSHALL")

    def channels(self) -> set[bytes]:
        """
        The pub/sub channels someone is subscribed to.
        """
        return set(_words(self.command("PUBSUB", "CHANNELS")))

    def subscribers(self, *channels: str) -> dict[str, int]:
        """
        How many connections are subscribed to each of C{channels}.
        """
        words = _words(self.command("PUBSUB", "NUMSUB", *channels))
        return {words[i].decode(): int(words[i + 1]) for i in range(0, len(words), 2)}

    def ownerOf(self, channel: str) -> RedisServer:
        """
        The server that holds C{channel}'s subscriptions: this one.
        """
        return self

    def waitUntilReady(self) -> None:
        """
        Nothing to wait for: L{start} waits until the server answers (a
        cluster's masters must also agree again).
        """

    def stop(self) -> None:
        """
        Kill the server and wait for it.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _words(raw: bytes) -> list[bytes]:
    """
    The strings and integers of a flat RESP array, as raw bytes.
    """
    return [line.lstrip(b":") for line in raw.split(b"\r\n")[1:] if line and line[:1] not in b"*$"]


class RedisClusterServers:
    """
    A Redis Cluster of three masters, each a L{RedisServer} with cluster
    mode on, joined with C{redis-cli --cluster create}; with C{replicas},
    that many replicas of each master too (all in L{nodes}: a replica owns
    no slot, so L{ownerOf} never names one until it is promoted).
    """

    def __init__(self, size: int = 3, replicas: int = 0) -> None:
        cli = requireRedis("redis-cli")
        self.nodes = [
            RedisServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
            for _ in range(size * (1 + replicas))
        ]
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.waitUntilReady()
        if replicas:
            self.waitUntilReplicated(size * replicas)

    def waitUntilReplicated(self, count: int, timeout: float = 20) -> None:
        """
        Wait until C{count} replicas have finished their first sync with
        their masters (a replica still loading cannot take over).
        """
        deadline = time.monotonic() + timeout
        while sum(b"master_link_status:up" in node.command("INFO", "replication") for node in self.nodes) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster's replicas did not sync")
            time.sleep(0.1)

    def replicaOf(self, master: RedisServer) -> RedisServer:
        """
        A replica of C{master}.
        """
        masterId = master.command("CLUSTER", "MYID").split(b"\r\n")[1]
        for node in self.nodes:
            if node is master or node.process is None:
                continue
            for line in node.command("CLUSTER", "NODES").split(b"\n"):
                fields = line.split()
                if len(fields) > 3 and b"myself" in fields[2] and fields[3] == masterId:
                    return node
        raise AssertionError(f"no replica of the master on port {master.port}")

    def waitUntilReady(self, timeout: float = 20) -> None:
        """
        Wait until every master is up and sees the whole cluster (a client
        that asks one that does not yet is told CLUSTERDOWN); a master
        restarted keeps its slots (its nodes.conf is in its directory).
        """
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                node.start()
        while not all(b"cluster_state:ok" in node.command("CLUSTER", "INFO") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def flush(self) -> None:
        for node in self.nodes:
            node.command("FLUSHALL")

    def command(self, *words: str) -> bytes:
        """
        One command about a key, sent to the master that owns the key's slot.
        """
        return self.ownerOf(words[1]).command(*words)

    def ownerOf(self, name: str) -> RedisServer:
        """
        The master that owns the slot of C{name} (a key or a sharded channel).
        """
        from redis.crc import key_slot

        slot = key_slot(name.encode())
        for node in self.nodes:
            if node.process is not None and self._owns(node, slot):
                return node
        raise AssertionError(f"no master owns slot {slot}")

    def moveSlot(self, slot: int, target: RedisServer) -> None:
        """
        Move an empty C{slot} to the master C{target}, as a resharding does
        (IMPORTING, MIGRATING, then NODE on every master), and wait until
        every master agrees.
        """
        source = next(n for n in self.nodes if n is not target and self._owns(n, slot))
        targetId, sourceId = (n.command("CLUSTER", "MYID").split(b"\r\n")[1].decode() for n in (target, source))
        target.command("CLUSTER", "SETSLOT", str(slot), "IMPORTING", sourceId)
        source.command("CLUSTER", "SETSLOT", str(slot), "MIGRATING", targetId)
        for node in [target, source, *(n for n in self.nodes if n not in (target, source))]:
            node.command("CLUSTER", "SETSLOT", str(slot), "NODE", targetId)
        deadline = time.monotonic() + 10
        while not all(self._owns(n, slot) == (n is target) for n in self.nodes) or not all(
            b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"slot {slot} did not move")
            time.sleep(0.05)

    @staticmethod
    def _owns(node: RedisServer, slot: int) -> bool:
        for line in node.command("CLUSTER", "NODES").decode().splitlines():
            fields = line.split()
            if len(fields) < 8 or "myself" not in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return True
        return False

    def channels(self) -> set[bytes]:
        """
        The sharded channels someone is subscribed to, on every master.
        """
        return {c for node in self.nodes for c in _words(node.command("PUBSUB", "SHARDCHANNELS"))}

    def subscribers(self, *channels: str) -> dict[str, int]:
        """
        How many connections are subscribed to each sharded channel, counted
        on the master that owns it.
        """
        counts = {}
        for channel in channels:
            words = _words(self.ownerOf(channel).command("PUBSUB", "SHARDNUMSUB", channel))
            counts[channel] = int(words[1])
        return counts

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


_server: RedisServer | None = None


def sharedServer() -> RedisServer:
    """
    One Redis for the contract tests of this process, emptied before each.
    """
    global _server
    if _server is None or _server.process is None:
        _server = RedisServer()
        atexit.register(_server.cleanup)
    return _server


_cluster: RedisClusterServers | None = None


def sharedCluster() -> RedisClusterServers:
    """
    One Redis Cluster for the tests of this process, emptied before each.
    """
    global _cluster
    if _cluster is None:
        _cluster = RedisClusterServers()
        atexit.register(_cluster.cleanup)
    return _cluster


async def until(condition: Any, timeout: float = 10.0, step: float = 0.05) -> None:
    """
    Wait, in the reactor, until C{condition()} is true.
    """
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        await task.deferLater(reactor, step, lambda: None)
        waited += step
