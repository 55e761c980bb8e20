"""
A bounded soak of a real ``twistd -n realtime``: many clients connecting,
chatting in rooms and being pushed to through the line port and the HTTP
API, reconnecting, while a few hostile clients attack; then every message
is accounted for.

    .venv/bin/python bench/soak.py                      # 2,000 clients, 3 minutes
    .venv/bin/python bench/soak.py --clients 50 --duration 10

The server runs ``--routing channels`` with public, publishable rooms
(``room:*``), a memory store and no offline queue, so every push is either
delivered or refused on the spot.  Each client (uid ``c<i>``) subscribes to
its room, publishes now and then, reads everything, and after a random
lifetime closes gracefully (reading to the server's close frame) and
reconnects.  Every message carries an id; the server's answers say how many
connections accepted it (a publish reply's ``delivered``, the HTTP API's
``delivered``, the line port's ``ok``/``fail``), and the soak checks that
exactly that many copies were received.  The hostile clients, one of each
kind at a time: a never-reading spammer (dropped as a slow consumer, 1013,
within ~30 s), a slowloris (cut off by the head timeout), an oversized
message and a message of endless empty fragments (both 1009).

It reports the server's RSS at the start (all clients connected), the middle
and the end (after the clients left), the errors, and the messages lost;
the exit status is 0 only with no error, no loss and every attack answered
as expected.  Loopback only; every loop ends at ``--duration`` and every
wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench.soakwire import OP_CLOSE, TIMEOUT, HttpApi, LinePort, WebSocket, frame, upgrade  # noqa: E402
from tests.serverprocess import API_KEY, ServerProcess  # noqa: E402

MAX_MESSAGE = 65536
#: what each kind of attack should end in
EXPECTED = {"spammer": "dropped", "slowloris": "closed", "oversized": "1009", "fragments": "1009"}
#: an attack the end of the run interrupted
STOPPED = "stopped by the end of the run"


def rssMb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Soak:
    """
    The shared state of one run: its options, the ledger and the outcome.
    """

    def __init__(self, args: argparse.Namespace, server: ServerProcess) -> None:
        self.args = args
        self.server = server
        self.stopping = False
        self.expected: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.hostile: dict[str, Counter[str]] = {kind: Counter() for kind in EXPECTED}
        self.errors: list[str] = []
        self.errorCount = 0

    def error(self, text: str) -> None:
        self.errorCount += 1
        if len(self.errors) < 20:
            self.errors.append(text)

    def answered(self, kind: str, mid: str, delivered: int) -> None:
        """
        The server says C{delivered} connections accepted message C{mid}.
        """
        self.counts[kind + (" delivered" if delivered else " refused")] += 1
        self.expected[mid] += delivered

    # -- clients -------------------------------------------------------------

    async def client(self, i: int, connected: asyncio.Event | None) -> None:
        uid, room = f"c{i}", f"room:{i % self.args.rooms}"
        while not self.stopping:
            try:
                ws = await WebSocket.open(self.server.ports["port"], uid)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                self.error(f"{uid} connect: {e!r}")
                await asyncio.sleep(1)
                continue
            self.counts["connections"] += 1
            await self.session(ws, uid, room, connected)
            connected = None
            await asyncio.sleep(random.uniform(0.1, 1.0))

    async def session(self, ws: WebSocket, uid: str, room: str, connected: asyncio.Event | None) -> None:
        pending: set[str] = set()
        subscribed = asyncio.Event()
        reader = asyncio.ensure_future(self.read(ws, uid, pending, subscribed))
        ws.sendJson({"id": "s", "op": "subscribe", "channel": room})
        try:
            await asyncio.wait_for(subscribed.wait(), TIMEOUT)
        except TimeoutError:
            self.error(f"{uid}: no subscribe reply")
        if connected is not None:
            connected.set()
        end = time.monotonic() + random.uniform(*self.args.lifetime)
        serial = 0
        while not self.stopping and not reader.done():
            pause = random.expovariate(1 / self.args.publish_every)
            if time.monotonic() + pause > end:
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                break
            await asyncio.sleep(pause)
            serial += 1
            mid = f"{uid}.{self.counts['connections']}.{serial}"
            pending.add(mid)
            ws.sendJson({"id": mid, "op": "publish", "channel": room, "data": {"mid": mid}})
            self.counts["publishes"] += 1
        deadline = time.monotonic() + TIMEOUT
        while pending and not reader.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if pending:
            self.error(f"{uid}: {len(pending)} publishes unanswered")
        if not reader.done():
            ws.startClose()
        try:
            await asyncio.wait_for(reader, TIMEOUT)
        except TimeoutError:
            self.error(f"{uid}: the server did not finish the close")
        ws.abort()

    async def read(self, ws: WebSocket, uid: str, pending: set[str], subscribed: asyncio.Event) -> None:
        """
        Everything the server sends, to its close frame.
        """
        try:
            while True:
                opcode, payload = await ws.read()
                if opcode == OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    if code != 1000:
                        self.error(f"{uid}: closed by the server with {code} {payload[2:]!r}")
                    return
                self.dispatch(json.loads(payload), pending, subscribed, uid)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self.error(f"{uid}: connection lost: {e!r}")

    def dispatch(self, message: dict[str, Any], pending: set[str], subscribed: asyncio.Event, uid: str) -> None:
        kind = message.get("type")
        if kind == "message":
            self.received[message["data"]["mid"]] += 1
        elif kind == "push":
            data = message["data"]
            self.received[json.loads(data)["id"] if data.startswith("{") else data] += 1
        elif kind == "reply" and message.get("id") == "s":
            if not message.get("ok"):
                self.error(f"{uid}: subscribe refused: {message}")
            subscribed.set()
        elif kind == "reply" and message.get("id") in pending:
            pending.discard(message["id"])
            if message.get("ok"):
                self.answered("publish", message["id"], message["result"]["delivered"])
            else:
                self.error(f"{uid}: publish refused: {message}")
        elif kind not in ("join", "leave"):
            self.error(f"{uid}: unexpected {message}")

    # -- backends ------------------------------------------------------------

    async def linePusher(self) -> None:
        port = await LinePort.open(self.server.ports["push-port"])
        sent: list[str] = []

        async def answers() -> None:
            for mid in iter(lambda: sent.pop(0) if sent else None, None):
                answer = await port.answer()
                if answer in ("ok", "fail"):
                    self.answered("line push", mid, answer == "ok")
                else:
                    self.error(f"line port answered {answer!r} for {mid}")

        serial = 0
        tick = 0.05
        while not self.stopping:
            await asyncio.sleep(tick)
            for _ in range(max(1, round(self.args.line_rate * tick))):
                serial += 1
                mid = f"L{serial}"
                port.push({"uid": f"c{random.randrange(self.args.clients)}", "id": mid})
                sent.append(mid)
            await answers()
        port.writer.close()

    async def httpPusher(self, worker: int) -> None:
        api = HttpApi(self.server.ports["api-port"], API_KEY)
        serial = 0
        while not self.stopping:
            await asyncio.sleep(random.expovariate(self.args.http_rate / self.args.http_workers))
            serial += 1
            mid = f"H{worker}.{serial}"
            if serial % 4:
                path, body = "/api/push", {"uid": f"c{random.randrange(self.args.clients)}", "data": mid}
            else:
                path, body = "/api/publish", {"channel": f"room:{random.randrange(self.args.rooms)}", "data": {"mid": mid}}
            try:
                status, answer = await api.request("POST", path, body)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                self.error(f"HTTP {path}: {e!r} (message {mid} unaccounted)")
                continue
            if status == 200:
                self.answered("http " + path, mid, answer["delivered"])
            else:
                self.error(f"HTTP {path} answered {status} {answer}")
        api.close()

    # -- hostile clients -----------------------------------------------------

    async def attacker(self, kind: str) -> None:
        attack = getattr(self, "attack_" + kind)
        while not self.stopping:
            try:
                outcome = await attack()
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                outcome = f"failed: {e!r}"
            self.hostile[kind][outcome] += 1
            await asyncio.sleep(1)

    async def attack_spammer(self) -> str:
        """
        Requests with 60 kB ids, never reading the error replies.
        """
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.server.ports["port"]))
            await loop.sock_sendall(sock, upgrade() + frame(b"spammer"))
            request = frame(b'{"id": "' + b"x" * 60_000 + b'", "op": "x"}')
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                if self.stopping:
                    return STOPPED
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, request), 1)
                except TimeoutError:
                    pass  # the server stopped reading us
                except (ConnectionResetError, BrokenPipeError):
                    return "dropped"
            return "still open after 45 s"
        finally:
            sock.close()

    async def attack_slowloris(self) -> str:
        """
        A request head one byte every two seconds.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.ports["port"])
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            while time.monotonic() - started < 30:
                if self.stopping:
                    return STOPPED
                writer.write(b"X")
                try:
                    if not await asyncio.wait_for(reader.read(1024), 2):
                        return "closed"
                except TimeoutError:
                    continue
                except ConnectionError:
                    return "closed"
            return "still open after 30 s"
        finally:
            writer.close()

    async def refused(self, ws: WebSocket) -> str:
        try:
            while True:
                opcode, payload = await asyncio.wait_for(ws.read(), TIMEOUT)
                if opcode == OP_CLOSE:
                    return str(int.from_bytes(payload[:2], "big"))
        finally:
            ws.abort()

    async def attack_oversized(self) -> str:
        ws = await WebSocket.open(self.server.ports["port"], "oversized")
        ws.writer.write(frame(b"x" * (MAX_MESSAGE + 1)))
        return await self.refused(ws)

    async def attack_fragments(self) -> str:
        ws = await WebSocket.open(self.server.ports["port"], "fragments")
        ws.writer.write(frame(b"", fin=False) + frame(b"", opcode=0, fin=False) * 1100)
        return await self.refused(ws)

    # -- the run -------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        api = HttpApi(self.server.ports["api-port"], API_KEY)
        try:
            return (await api.request("GET", "/api/stats"))[1]  # type: ignore[no-any-return]
        finally:
            api.close()

    async def run(self) -> dict[str, Any]:
        args, pid = self.args, self.server.process.pid  # type: ignore[union-attr]
        rss = {"fresh": rssMb(pid)}
        gate = asyncio.Semaphore(64)

        async def start(i: int) -> None:
            async with gate:
                connected = asyncio.Event()
                clients.append(asyncio.ensure_future(self.client(i, connected)))
                await asyncio.wait_for(connected.wait(), 60)

        clients: list[asyncio.Future[None]] = []
        began = time.monotonic()
        await asyncio.gather(*(start(i) for i in range(args.clients)))
        rss["start"] = rssMb(pid)
        ramp = time.monotonic() - began
        others = [asyncio.ensure_future(self.linePusher())]
        others += [asyncio.ensure_future(self.httpPusher(w)) for w in range(args.http_workers)]
        if not args.no_hostile:
            others += [asyncio.ensure_future(self.attacker(kind)) for kind in EXPECTED]
        peak = rss["start"]
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            peak = max(peak, rssMb(pid))
            if "middle" not in rss and time.monotonic() > deadline - args.duration / 2:
                rss["middle"] = rssMb(pid)
        self.stopping = True
        done, late = await asyncio.wait(clients + others, timeout=90)
        for task in late:
            self.error(f"still running after the stop: {task}")
            task.cancel()
        for task in done:
            if task.exception() is not None:
                self.error(f"task failed: {task.exception()!r}")
        await asyncio.sleep(2)
        rss["end"] = rssMb(pid)
        stats = await self.stats()
        lost = sum(max(0, n - self.received[mid]) for mid, n in self.expected.items())
        extra = sum(max(0, n - self.expected[mid]) for mid, n in self.received.items())
        hostile = {kind: dict(outcomes) for kind, outcomes in self.hostile.items()}
        unexpected = {
            kind: {o: n for o, n in outcomes.items() if o not in (EXPECTED[kind], STOPPED)} for kind, outcomes in hostile.items()
        }
        unexpected = {kind: outcomes for kind, outcomes in unexpected.items() if outcomes}
        return {
            "clients": args.clients,
            "duration": args.duration,
            "rampSeconds": round(ramp, 1),
            "rssMb": {k: round(v, 1) for k, v in {**rss, "peak": peak}.items()},
            "counts": dict(self.counts),
            "messagesExpected": sum(self.expected.values()),
            "messagesReceived": sum(self.received.values()),
            "lost": lost,
            "duplicates": extra,
            "errors": self.errorCount,
            "firstErrors": self.errors,
            "hostile": hostile,
            "hostileUnexpected": unexpected,
            "serverSlowConsumers": stats.get("slowConsumers"),
            "serverConnectionsAtEnd": stats.get("connections"),
            "ok": not (self.errorCount or lost or extra or unexpected or stats.get("connections")),
        }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load after the ramp (default 180)")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--publish-every", type=float, default=20.0, help="mean seconds between a client's publishes")
    parser.add_argument("--lifetime", type=float, nargs=2, default=(10.0, 60.0), help="a connection's lifetime range")
    parser.add_argument("--line-rate", type=float, default=200.0, help="line-port pushes per second")
    parser.add_argument("--http-rate", type=float, default=40.0, help="HTTP API pushes/publishes per second")
    parser.add_argument("--http-workers", type=int, default=2)
    parser.add_argument("--no-hostile", action="store_true", help="leave the attackers out")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    return parser.parse_args(argv)


def serverArgs() -> list[str]:
    return [
        "--routing", "channels",
        "--store", "memory",
        "--offline-ttl", "0",
        "--namespace", "room:*:public=true:publish=true",
        "--max-message-size", str(MAX_MESSAGE),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = ServerProcess(*serverArgs()).start()
    try:
        report = asyncio.run(Soak(args, server).run())
    finally:
        server.stop()
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:24} {value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
