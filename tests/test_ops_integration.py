"""
The operator's view of a real server after a known session: what
``/metrics`` scrapes, what ``/api/stats`` and ``realtime-push stats`` print,
``/healthz`` and ``/readyz``, and JSON logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from urllib.parse import urlencode

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from realtime.auth.wechat import computeSignature
from tests.serverprocess import API_KEY, ServerProcess, api, environment, get, linePush, waitUntil

TOKEN = "metrics-test-token-0123456789"


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    ``/metrics`` parsed: C{(sample name, sorted labels) -> value}.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['port']}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def signedUrl(server: ServerProcess, uid: str, nonce: str) -> str:
    """
    A WebSocket URL signed for C{uid} as ``--auth wechat`` wants it, with
    C{nonce} padded to the 16 characters it needs.
    """
    ts = str(int(time.time()))
    nonce = nonce.ljust(16, "0")
    query = {"uid": uid, "timestamp": ts, "nonce": nonce, "signature": computeSignature(TOKEN, ts, nonce, uid)}
    return server.url("/ws?" + urlencode(query))


class KnownSessionTests(SynchronousTestCase):
    """
    3 connections, 2 bad signatures and 1 missing one, 4 HTTP pushes, 3
    line pushes (2 delivered, 1 to nobody), 1 client message, and 1 push
    queued for an offline uid then delivered: the scrape says exactly that.
    """

    def test_metricsMatchTheSession(self) -> None:
        """
        Every counter of the session is scraped with its value, and
        C{realtime-push stats} prints the same numbers.
        """
        server = ServerProcess("--auth", "wechat", "--auth-option", f"token={TOKEN}").start()
        self.addCleanup(server.stop)
        stack = ExitStack()
        self.addCleanup(stack.close)
        connections = [stack.enter_context(connect(signedUrl(server, f"w{n}", f"n{n}"))) for n in (1, 2, 3)]
        for bad in ("b1", "b2"):
            url = signedUrl(server, "w9", bad).replace("signature=", "signature=0")[:-1]
            with self.assertRaises(InvalidStatus):
                connect(url)
        with self.assertRaises(InvalidStatus):
            connect(server.url("/ws?uid=w9"))
        with connect(signedUrl(server, "w4", "n4")):
            waitUntil(lambda: scrape(server)[("realtime_connections", ())] == 4)
        waitUntil(lambda: scrape(server)[("realtime_connections", ())] == 3)

        for n in range(4):
            status, body = api(server, "POST", "/api/push", json.dumps({"uid": "w1", "data": {"n": n}}).encode())
            self.assertEqual((status, body["status"]), (200, "delivered"))
        self.assertEqual(
            linePush(server.ports["push-port"], b'{"uid":"w2","a":1}\n', b'{"uid":"w2","a":2}\n', b'{"uid":"x"}\n'),
            [b"ok", b"ok", b"fail"],
        )
        status, body = api(server, "POST", "/api/push", b'{"uid": "w4", "data": "while you were away"}')
        self.assertEqual(body["status"], "queued")
        connections[2].send("hello?")
        self.assertIn("push-only", connections[2].recv(timeout=5))
        with connect(signedUrl(server, "w4", "n5")) as ws:
            self.assertEqual(ws.recv(timeout=5), "while you were away")

        waitUntil(lambda: scrape(server)[("realtime_connections", ())] == 3)
        m = scrape(server)
        route = (("route", "uid"),)
        expected = {
            ("realtime_connections", ()): 3,
            ("realtime_uids", ()): 3,
            ("realtime_sessions_opened_total", ()): 5,
            ("realtime_auth_failures_total", (("auth", "wechat"), ("reason", "bad signature"))): 2,
            ("realtime_auth_failures_total", (("auth", "wechat"), ("reason", "missing signature"))): 1,
            ("realtime_messages_in_total", route): 1,
            ("realtime_messages_in_bytes_total", route): len("hello?"),
            # 4 HTTP pushes + 2 line pushes + 1 queued push delivered
            ("realtime_messages_out_total", route): 7,
            ("realtime_slow_consumer_drops_total", ()): 0,
            ("realtime_broker_up", (("broker", "memory"),)): 1,
            ("realtime_api_requests_total", ()): 5,
            ("realtime_api_pushes_total", ()): 5,
            ("realtime_api_errors_total", ()): 0,
            ("realtime_line_requests_total", (("answer", "ok"),)): 2,
            ("realtime_line_requests_total", (("answer", "fail"),)): 1,
            ("realtime_line_requests_total", (("answer", "error"),)): 0,
            ("realtime_offline_queued_total", ()): 1,
            ("realtime_offline_delivered_total", ()): 1,
            ("realtime_push_latency_seconds_count", (("source", "http"), ("target", "uid"))): 5,
            ("realtime_push_latency_seconds_count", (("source", "line"), ("target", "uid"))): 3,
        }
        self.assertEqual({key: m.get(key) for key in expected}, expected)
        self.assertEqual(
            m[("realtime_push_latency_seconds_bucket", (("le", "+Inf"), ("source", "http"), ("target", "uid")))], 5
        )
        self.assertEqual(
            m[("realtime_info", (("auth", "wechat"), ("broker", "memory"), ("routing", "uid"), ("version", "0.1.0")))],
            1,
        )
        self.assertGreater(m[("process_resident_memory_bytes", ())], 0)

        status, stats = api(server, "GET", "/api/stats")
        self.assertEqual(
            (stats["connections"], stats["authFailures"], stats["messagesOut"], stats["linePort"]["ok"]),
            (3, {"bad signature": 2, "missing signature": 1}, 7, 2),
        )
        result = subprocess.run(
            [sys.executable, "-c", "from realtime.client.blocking import main; raise SystemExit(main())", "--url", server.apiUrl(), "--api-key", API_KEY, "stats"],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        rows: dict[str, str] = {}
        for line in result.stdout.splitlines():
            # the first row of a name: "connections" is also a line port row
            rows.setdefault(" ".join(line.split()[:-1]), line.split()[-1] if line.strip() else "")
        self.assertEqual(rows["connections"], "3")
        self.assertEqual(rows["bad signature"], "2")
        self.assertEqual(rows["messages out"], "7")
        self.assertEqual(rows["ok"], "2")


class HealthTests(SynchronousTestCase):
    """
    Liveness and readiness on the web port.
    """

    def test_healthAndReady(self) -> None:
        """
        A running server is alive and ready, the store answering.
        """
        server = ServerProcess().start()
        self.addCleanup(server.stop)
        self.assertEqual(get(server, "/healthz"), (200, {"status": "ok"}))
        self.assertEqual(get(server, "/readyz"), (200, {"ready": True, "checks": {"broker": "ok", "store": "ok"}}))


class JsonLogTests(SynchronousTestCase):
    """
    C{--log-format json} under twistd: one JSON object per line.
    """

    def test_jsonLines(self) -> None:
        """
        Every line the server prints is a JSON object with time, level,
        namespace and text, and the structured fields of the event.
        """
        server = ServerProcess("--log-format", "json").start()
        try:
            server.waitFor("INSECURE")
        finally:
            server.stop()
        records = [json.loads(line) for line in server.lines if line.strip()]
        self.assertTrue(all({"time", "level", "namespace", "text"} <= set(r) for r in records), records[:3])
        listening = [r for r in records if r.get("option") == "port"]
        self.assertEqual(len(listening), 1, records)
        self.assertEqual(listening[0]["namespace"], "realtime.tap")
        self.assertTrue(listening[0]["text"].startswith("--port listening on 127.0.0.1:"))
        self.assertIn("warn", {r["level"] for r in records})
