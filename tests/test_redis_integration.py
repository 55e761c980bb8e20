"""
Several real servers on one real Redis act as one: C{twistd -n realtime
--broker redis://... --store redis://...} processes, real WebSocket clients
and the line port, against a C{redis-server} the test starts on a free port.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import connect

from tests.redisnodes import held
from tests.redisserver import RedisServer
from tests.serverprocess import ServerProcess, api, environment, linePush, run, twistdCommand, waitUntil


class TwoNodesTests(SynchronousTestCase):
    """
    Two nodes on one Redis: what one takes, the other's clients get.
    """

    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        self.nodes = [self.node() for _ in range(2)]

    def node(self, *extra: str) -> ServerProcess:
        server = ServerProcess("--broker", self.redis.url, "--store", self.redis.url, *extra).start()
        self.addCleanup(server.stop)
        return server

    def online(self, server: ServerProcess, uid: str) -> int:
        count: int = api(server, "GET", f"/api/online?uid={uid}")[1]["online"][uid]
        return count

    def test_runsOnTheAsyncioReactor(self) -> None:
        """
        The one command a user types picks the reactor Redis needs by itself.
        """
        self.assertIn("AsyncioSelectorReactor", self.nodes[0].output)

    def test_pushReachesAnotherNode(self) -> None:
        """
        A Workerman-style push to node A's line port reaches the uid's client
        on node B, and is answered ok only because a node holds the uid.
        """
        a, b = self.nodes
        with connect(b.url("/")) as ws:
            ws.send("alice")
            waitUntil(lambda: held(self.redis, a, "alice"), timeout=10)
            self.assertEqual(linePush(a.ports["push-port"], b'{"uid":"alice","percent":"88%"}\n'), [b"ok"])
            self.assertEqual(json.loads(ws.recv(timeout=10)), {"uid": "alice", "percent": "88%"})
        self.assertEqual(linePush(a.ports["push-port"], b'{"uid":"nobody","x":1}\n'), [b"fail"])

    def test_offlineWaitsOnAnyNode(self) -> None:
        """
        A push for a uid that is away, taken by node A, waits in Redis and is
        delivered when the uid comes back on node B.
        """
        a, b = self.nodes
        with connect(a.url("/")) as ws:
            ws.send("bob")
            waitUntil(lambda: self.online(b, "bob") == 1, timeout=10)
        waitUntil(lambda: self.online(b, "bob") == 0, timeout=10)
        # the connection is recorded in the shared store at the end of its turn
        deadline = time.monotonic() + 10
        while (answer := linePush(a.ports["push-port"], b'{"uid":"bob","n":1}\n')) != [b"queued"]:
            self.assertLess(time.monotonic(), deadline, answer)
            time.sleep(0.2)
        with connect(b.url("/")) as ws:
            ws.send("bob")
            self.assertEqual(json.loads(ws.recv(timeout=10)), {"uid": "bob", "n": 1})

    def test_clusterStats(self) -> None:
        """
        The stats of either node count the cluster's connections.
        """
        a, b = self.nodes
        with connect(a.url("/")) as one, connect(b.url("/")) as two:
            one.send("u1")
            two.send("u2")
            waitUntil(lambda: api(a, "GET", "/api/stats")[1].get("connections") == 2, timeout=15)
            self.assertEqual(api(b, "GET", "/api/stats")[1]["nodes"], 2)


class ReactorTests(SynchronousTestCase):
    def test_otherReactorRefused(self) -> None:
        """
        Asked to run Redis on another reactor (C{twistd -r epoll}), the
        server refuses at once with the command that works.
        """
        done = subprocess.run(
            [*twistdCommand(), "-n", "--pidfile=", "-r", "epoll", "realtime", "--broker", "redis://127.0.0.1:1/0"],
            cwd=tempfile.mkdtemp(prefix="realtime-it-"),
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("Redis needs Twisted's asyncio reactor", done.stdout + done.stderr)
        self.assertIn("twistd -r asyncio -n realtime", done.stdout + done.stderr)

    def test_badURLRefused(self) -> None:
        """
        A Redis URL of no known form is refused naming the option.
        """
        done = run(["--store", "redis+sentinel://127.0.0.1:26379"])
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("--store", done.stdout + done.stderr)
        self.assertIn("redis+sentinel://HOST:PORT", done.stdout + done.stderr)
