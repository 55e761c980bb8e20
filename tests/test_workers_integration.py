"""
C{twistd -n realtime --workers 2} on a real Redis: one command, one set of
ports, two worker processes behind them, each a node of the cluster.

Real twistd processes, real WebSocket clients and a C{redis-server} the test
starts on a free port; every wait is on a condition (a line printed, an
answer from the API), with timeouts that only keep a broken run from hanging.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import time
from contextlib import ExitStack
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from realtime.broker.redispresence import PresenceKeys
from tests.certificates import selfSigned, sslEndpoint
from tests.redisserver import RedisServer
from tests.serverprocess import ServerProcess, api, run, waitUntil
from tests.tlsclient import connectTLS

STARTED = re.compile(r"worker (\d+) of (\d+) started \(pid (\d+)\)")


def workerPids(server: ServerProcess) -> dict[int, list[int]]:
    """
    Each worker place's pids, in the order the parent started them.
    """
    pids: dict[int, list[int]] = {}
    for line in server.output.splitlines():
        match = STARTED.search(line)
        if match:
            pids.setdefault(int(match.group(1)), []).append(int(match.group(3)))
    return pids


def gone(pid: int) -> bool:
    """
    Whether process C{pid} has ended (a zombie nobody reaped has ended too).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def respParts(answer: bytes) -> list[str]:
    """
    The bulk strings of a RESP array answer (C{HGETALL}'s field, value, ...).
    """
    lines = answer.split(b"\r\n")
    return [lines[i + 1].decode() for i, line in enumerate(lines) if line.startswith(b"$") and line != b"$-1"]


class WorkersTestCase(SynchronousTestCase):
    """
    A Redis and a C{--workers 2} server on it, per test.
    """

    def serverProcess(self, *args: str) -> ServerProcess:
        return ServerProcess(*args)

    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.cleanup)
        self.connections = ExitStack()
        self.addCleanup(self.connections.close)
        self.server = self.serverProcess("--workers", "2", "--broker", self.redis.url, "--store", self.redis.url).start(
            60
        )
        self.addCleanup(self.server.stop)
        waitUntil(lambda: len(workerPids(self.server)) == 2, timeout=30)
        waitUntil(lambda: self.stats().get("nodes") == 2, timeout=60)

    def stats(self) -> dict[str, Any]:
        status, body = api(self.server, "GET", "/api/stats")
        return body if status == 200 else {}

    def nodesOf(self, uid: str) -> set[str]:
        """
        The nodes (workers) where C{uid} holds a connection, as Redis has them.
        """
        parts = respParts(self.redis.command("HGETALL", PresenceKeys().connections(uid)))
        return {node for node, count in zip(parts[::2], parts[1::2], strict=True) if int(count) > 0}

    def spreadClients(self) -> dict[str, tuple[ClientConnection, str]]:
        """
        Connect clients (uids c0, c1, ...) until some are on each worker.

        @return: uid -> (its connection, the node it landed on).
        """
        clients: dict[str, tuple[ClientConnection, str]] = {}
        deadline = time.monotonic() + 60
        while len({node for _, node in clients.values()}) < 2:
            self.assertLess(time.monotonic(), deadline, f"every client landed on one worker: {clients}")
            uid = f"c{len(clients)}"
            ws = self.connections.enter_context(connect(self.server.url("/")))
            ws.send(uid)
            waitUntil(lambda uid=uid: len(self.nodesOf(uid)) == 1, timeout=20)
            (node,) = self.nodesOf(uid)
            clients[uid] = (ws, node)
        return clients


class WorkersTests(WorkersTestCase):
    def test_pushReachesEveryWorkerOnce(self) -> None:
        """
        Clients of one port land on both workers, and each push through the
        API (taken by whichever worker accepts the request) reaches every
        addressed client once, in order.
        """
        clients = self.spreadClients()
        self.assertEqual(len({node for _, node in clients.values()}), 2)
        uids = sorted(clients)
        for n in range(6):
            status, body = api(self.server, "POST", "/api/push", json.dumps({"uid": uids, "data": {"n": n}}).encode())
            self.assertEqual((status, body["status"], body["delivered"]), (200, "delivered", len(uids)), body)
        status, body = api(self.server, "POST", "/api/broadcast", json.dumps({"data": "end"}).encode())
        self.assertEqual(status, 200, body)
        for uid, (ws, _) in clients.items():
            got = [ws.recv(timeout=20) for _ in range(7)]
            self.assertEqual(got, [json.dumps({"n": n}, separators=(",", ":")) for n in range(6)] + ["end"], uid)

    def test_killedWorkerRestarts(self) -> None:
        """
        A worker killed with SIGKILL is started again, logged, and serves:
        a node that was not there before answers on the same port.
        """
        before = {self.stats().get("node") for _ in range(10)}
        killed = workerPids(self.server)[1][0]
        os.kill(killed, signal.SIGKILL)
        line = self.server.waitFor(f"worker 1 (pid {killed}) ended on signal 9 (SIGKILL)", timeout=30)
        self.assertIn("starting it again in 0.5 s", line)
        waitUntil(lambda: len(workerPids(self.server)[1]) == 2, timeout=30)
        seen: set[Any] = set()
        waitUntil(lambda: bool(seen.add(self.stats().get("node")) or (seen - before - {None})), timeout=60)
        self.assertTrue(gone(killed))

    def stopsEveryProcess(self, number: int) -> None:
        """
        Signal C{number} to the parent stops every worker (their clients get
        1001) and the parent exits 0.
        """
        pids = [pid for slot in workerPids(self.server).values() for pid in slot]
        clients = self.spreadClients()
        self.assertEqual(self.server.stop(number, timeout=60), 0, self.server.output)
        for uid, (ws, _) in clients.items():
            with self.assertRaises(ConnectionClosed) as caught:
                ws.recv(timeout=20)
            self.assertEqual(caught.exception.rcvd.code if caught.exception.rcvd else None, 1001, uid)
        for pid in pids:
            self.assertTrue(gone(pid), f"worker {pid} still runs")
        self.assertNotIn("Traceback", self.server.output)

    def test_sigtermStopsEveryProcess(self) -> None:
        """
        SIGTERM to the parent: every worker stops in order, exit status 0.
        """
        self.stopsEveryProcess(signal.SIGTERM)

    def test_sigintStopsEveryProcess(self) -> None:
        """
        SIGINT (Ctrl-C) to the parent: the same.
        """
        self.stopsEveryProcess(signal.SIGINT)


class TLSWorkersTests(WorkersTestCase):
    """
    Workers serving TLS on the parent's sockets.
    """

    def serverProcess(self, *args: str) -> ServerProcess:
        keyPath, self.certPath = selfSigned()
        endpoint = sslEndpoint(keyPath, self.certPath)
        plain = "tcp:0:interface=127.0.0.1"
        return ServerProcess("--port", endpoint, "--api-port", plain, "--push-port", plain, *args, defaultPorts=False)

    def test_tlsThenParentKilled(self) -> None:
        """
        The workers speak TLS on the parent's TLS socket, with its
        certificate; and a parent killed with SIGKILL leaves no worker
        behind: each sees the parent's pipe close and stops.
        """
        context = ssl.create_default_context(cafile=self.certPath)
        with connectTLS(f"wss://127.0.0.1:{self.server.ports['port']}/", context) as ws:
            ws.send("tls-user")
            waitUntil(lambda: api(self.server, "GET", "/api/online?uid=tls-user")[1]["online"]["tls-user"] == 1, 20)
            api(self.server, "POST", "/api/push", b'{"uid":"tls-user","data":"over tls"}')
            self.assertEqual(ws.recv(timeout=20), "over tls")
        pids = [pid for slot in workerPids(self.server).values() for pid in slot]
        assert self.server.process is not None
        self.server.process.kill()
        self.server.process.wait(30)
        waitUntil(lambda: all(gone(pid) for pid in pids), timeout=60)


class RefusalTests(SynchronousTestCase):
    def test_workersNeedRedis(self) -> None:
        """
        C{--workers 2} without a Redis broker is refused at once, saying
        why and what to add.
        """
        done = run(["--workers", "2"])
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("--workers 2 needs a broker every worker shares", done.stderr)
        self.assertIn("--broker redis://HOST:PORT/DB", done.stderr)
