"""
A client that never reads and keeps sending requests that earn answers,
against a real ``twistd -n realtime``: it is paused (the server stops
reading it) or, past ``--max-queued-bytes``, dropped, and the server's
memory stays bounded and comes back once it is gone.

Before the output budget counted every write, the first case below took
the server from 60 MB to gigabytes in seconds (issue 10).
"""

from __future__ import annotations

import errno
import json
import select
import socket
import time
import urllib.request
from typing import Callable

from realtime import closecodes
from tests.rawsocket import OP_CONTINUATION, OP_PING, RawClient
from tests.serverprocess import API_KEY, ServerProcess, ServerTestCase
from tests.support import clientFrame, handshake

#: how much the server may grow while attacked, and keep after it, in kB
GROWTH_KB = 40 * 1024
LEFT_KB = 16 * 1024

#: seconds to wait for a drop, or to see the server stop reading
DEADLINE = 10.0
#: no byte taken for this long: the server stopped reading us
STALL = 1.5

BIG_ID = clientFrame(b'{"id": "' + b"x" * 60_000 + b'", "op": "x"}')
PINGS = clientFrame(b"p" * 125, opcode=OP_PING) * 500
EMPTY = clientFrame(b"") * 2000


def rssKb(pid: int) -> int:
    """
    The resident set of process C{pid}, in kB.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stats(server: ServerProcess) -> dict[str, object]:
    """
    The server's C{/api/stats}.
    """
    request = urllib.request.Request(server.apiUrl() + "/api/stats", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


class Spammer:
    """
    A raw WebSocket client with a tiny receive buffer that never reads.
    """

    def __init__(self, server: ServerProcess, uid: str) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.socket.settimeout(10)
        self.socket.connect(("127.0.0.1", server.ports["port"]))
        self.socket.sendall(handshake("/") + clientFrame(uid.encode()))
        self.socket.setblocking(False)
        self.sent = 0

    def spam(self, data: bytes, until: Callable[[], bool]) -> str:
        """
        Send C{data} over and over until the server drops us (C{"dropped"}),
        stops reading us for L{STALL} seconds (C{"stalled"}), C{until()}
        says so (C{"enough"}) or L{DEADLINE} passes (C{"deadline"}).
        """
        start = lastProgress = time.monotonic()
        view = memoryview(data)
        while True:
            now = time.monotonic()
            if now - start > DEADLINE:
                return "deadline"
            if now - lastProgress > STALL:
                return "stalled"
            if until():
                return "enough"
            try:
                sent = self.socket.send(view)
            except BlockingIOError:
                select.select([], [self.socket], [], 0.05)
                continue
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    return "dropped"
                raise
            self.sent += sent
            lastProgress = now
            view = view[sent:] or memoryview(data)

    def close(self) -> None:
        self.socket.close()


class AttackTestCase(ServerTestCase):
    """
    Attacks one at a time, the server's RSS read around each.
    """

    def setUp(self) -> None:
        self.pid = self.server.process.pid  # type: ignore[union-attr]
        self.baseline = rssKb(self.pid)
        self.peak = self.baseline

    def watch(self) -> bool:
        """
        Record the peak RSS; never asks to stop.
        """
        self.peak = max(self.peak, rssKb(self.pid))
        return False

    def attack(self, data: bytes) -> str:
        """
        One never-reading client sends C{data} over and over; the outcome,
        once the server's memory was checked during and after it.
        """
        spammer = Spammer(self.server, "spammer")
        try:
            outcome = spammer.spam(data, self.watch)
        finally:
            spammer.close()
        self.assertLess(self.peak - self.baseline, GROWTH_KB, f"grew by {self.peak - self.baseline} kB ({outcome})")
        deadline = time.monotonic() + 5
        while stats(self.server)["connections"] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(stats(self.server)["connections"], 0)
        self.assertLess(rssKb(self.pid) - self.baseline, LEFT_KB)
        return outcome


class OverBudgetTests(AttackTestCase):
    """
    With a budget as small as Twisted's write buffer, one turn of answers
    past it drops the client at once (1013, then the abort that resets our
    socket), whatever earns the answers.
    """

    #: no --client-rate: a flood of requests would be closed with 4029 first
    serverArgs = ("--routing", "channels", "--store", "memory", "--max-queued-bytes", "65536", "--client-rate", "0")

    def assertDropped(self, data: bytes) -> None:
        before = stats(self.server)["slowConsumers"]
        self.assertEqual(self.attack(data), "dropped")
        self.assertEqual(stats(self.server)["slowConsumers"], before + 1)  # type: ignore[operator]

    def test_bigIdReplies(self) -> None:
        """
        Requests with a 60 kB id, each answered with an error carrying it.
        """
        self.assertDropped(BIG_ID)

    def test_pongs(self) -> None:
        """
        Pings with the largest payload, each answered with a pong.
        """
        self.assertDropped(PINGS)

    def test_errorReplies(self) -> None:
        """
        Empty messages, each answered with a bad_json error.
        """
        self.assertDropped(EMPTY)


class PausedTests(AttackTestCase):
    """
    With the default budget, a client that does not read is not read from:
    its requests stay in the kernel and earn nothing.
    """

    serverArgs = ("--store", "memory")

    def test_emptyContinuations(self) -> None:
        """
        A message kept open by empty continuation frames is closed with
        1009 at the default C{--max-message-frames} (1024).
        """
        with RawClient(self.server.ports["port"]) as client:
            client.send(clientFrame(b"uid"), clientFrame(b"", fin=False))
            client.send(clientFrame(b"", opcode=OP_CONTINUATION, fin=False) * 1023)
            client.send(clientFrame(b"", opcode=OP_CONTINUATION, fin=False))
            self.assertEqual(client.closeCode(), closecodes.MESSAGE_TOO_BIG)

    def test_pongs(self) -> None:
        """
        A ping flood, answered by pongs until they fill the socket buffers:
        from then on the server takes nothing more from the client.

        (A flood of empty messages is no test of this: Autobahn reads them
        so slowly that the client stalls either way.)
        """
        self.assertEqual(self.attack(PINGS), "stalled")
