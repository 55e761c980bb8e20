"""
The guide's "two machines behind a load balancer", run for real: Debian's
nginx with C{examples/deploy/nginx.conf} and C{nginx-nodes.conf} (changed as
the README says, and only in addresses, ports and paths besides) in front of
two real C{twistd -n realtime} nodes on one real C{redis-server}.  Clients
connect to nginx over TLS with no sticky sessions, land on both nodes, get
every push whichever node takes it, and when one node is killed they
reconnect through nginx to the other, where the pushes that waited for
them are delivered.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import time
import urllib.request
from contextlib import ExitStack
from typing import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.certificates import issuedThroughIntermediate
from tests.nginxprocess import Nginx, guideFile
from tests.redisserver import RedisServer
from tests.serverprocess import ServerProcess, freePorts, linePush, waitUntil
from tests.tlsclient import connectTLS


class Nodes:
    """
    Two nodes on one Redis behind nginx.
    """

    def __init__(self, nginx: Nginx, nodes: list[ServerProcess], https: int, ca: str, clients: ExitStack) -> None:
        self.nginx, self.nodes, self.https = nginx, nodes, https
        self.tls = ssl.create_default_context(cafile=ca)
        self._clients = clients

    def client(self, uid: str) -> ClientConnection:
        """
        A client of uid C{uid}, connected through nginx (uid first packet).
        """
        try:
            ws = connectTLS(f"wss://127.0.0.1:{self.https}/", self.tls)
        except (OSError, TimeoutError, ConnectionClosed) as e:
            raise AssertionError(f"{uid} could not connect through nginx: {e!r}\n{self.story()}") from e
        self._clients.enter_context(ws)
        ws.send(uid)
        return ws

    def story(self) -> str:
        """
        What nginx and the nodes logged, for a failure's message.
        """
        with open(self.nginx.path("access.log")) as f:
            access = f.read()
        nodes = "".join(f"\n--- node {i}:\n" + node.output[-6000:] for i, node in enumerate(self.nodes))
        return f"--- nginx errors:\n{self.nginx.errors()}\n--- nginx access:\n{access}{nodes}"


def localConnections(node: ServerProcess) -> int:
    """
    The sessions this node holds itself (its /metrics; /api/stats counts the
    whole cluster's).
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['port']}/metrics", timeout=5) as response:
        text = response.read().decode()
    [value] = re.findall(r"^realtime_connections (\S+)$", text, re.M)
    return int(float(value))


@pytest.fixture
def cluster() -> Iterator[Nodes]:
    redis = RedisServer()
    nginx = Nginx()
    nodes: list[ServerProcess] = []
    clients = ExitStack()
    try:
        nodes += [ServerProcess("--broker", redis.url, "--store", redis.url).start() for _ in range(2)]
        certificates = issuedThroughIntermediate(nginx.directory)
        http, https = freePorts(2)
        site = guideFile("nginx.conf", {
            "proxy_pass http://127.0.0.1:8080;": "proxy_pass http://realtime_nodes;",
            "listen 80;": f"listen 127.0.0.1:{http};",
            "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
            "/etc/letsencrypt/live/realtime.example.com/fullchain.pem": certificates["fullchain"],
            "/etc/letsencrypt/live/realtime.example.com/privkey.pem": certificates["key"],
        })  # fmt: skip
        upstream = guideFile("nginx-nodes.conf", {
            "10.0.0.11:8080": f"127.0.0.1:{nodes[0].ports['port']}",
            "10.0.0.12:8080": f"127.0.0.1:{nodes[1].ports['port']}",
        })  # fmt: skip
        nginx.start({"realtime-nodes.conf": upstream, "realtime.conf": site}, waitFor=https)
        with clients:
            yield Nodes(nginx, nodes, https, certificates["root"], clients)
    finally:
        for node in nodes:
            node.stop()
        nginx.stop()
        redis.cleanup()


def pushUntil(port: int, line: bytes, wanted: bytes, timeout: float = 15.0) -> None:
    """
    Push C{line} until the answer is C{wanted} (a client's uid message, or
    the news of its node's death, may still be on its way).
    """
    deadline = time.monotonic() + timeout
    while (answer := linePush(port, line + b"\n")) != [wanted]:
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def test_nodesBehindNginx(cluster: Nodes) -> None:
    """
    Clients spread over both nodes and get pushes taken by either; when a
    node dies its clients come back through nginx on the other node and
    get what was pushed to them meanwhile.
    """
    a, b = cluster.nodes
    uids = [f"u{i}" for i in range(4)]
    clients = {uid: cluster.client(uid) for uid in uids}
    waitUntil(lambda: localConnections(a) + localConnections(b) == 4, timeout=15)
    # least_conn with no stickiness: both nodes hold clients
    assert localConnections(a) >= 1 and localConnections(b) >= 1
    for uid, node in zip(uids, [a, b, a, b], strict=True):
        pushUntil(node.ports["push-port"], json.dumps({"uid": uid, "n": 1}).encode(), b"ok")
    for uid, ws in clients.items():
        assert json.loads(ws.recv(timeout=10)) == {"uid": uid, "n": 1}

    held = localConnections(b)
    b.stop(signal.SIGKILL)
    moved = 0
    for uid, ws in clients.items():
        try:
            ws.recv(timeout=2)
        except TimeoutError:
            continue  # A's client: still connected, nothing for it
        except ConnectionClosed:
            # B's client: gone with its node
            moved += 1
            # pushed while it is away: waits in Redis for its return
            pushUntil(a.ports["push-port"], json.dumps({"uid": uid, "n": 2}).encode(), b"queued")
            clients[uid] = cluster.client(uid)
            assert json.loads(clients[uid].recv(timeout=10)) == {"uid": uid, "n": 2}
    assert moved == held
    waitUntil(lambda: localConnections(a) == 4, timeout=15)
    for uid, ws in clients.items():
        pushUntil(a.ports["push-port"], json.dumps({"uid": uid, "n": 3}).encode(), b"ok")
        assert json.loads(ws.recv(timeout=10)) == {"uid": uid, "n": 3}
