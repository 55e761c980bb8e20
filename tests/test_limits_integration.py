"""
The connection limits of a real ``twistd realtime`` over real sockets: per
client address, X-Forwarded-For believed only from ``--trust-proxy``
addresses, and the total.

Clients connect from two loopback addresses (Linux answers all of
127.0.0.0/8 on the loopback, so no setup is needed): 127.0.0.1 plays an
ordinary client, 127.0.0.2 the trusted proxy.
"""

from __future__ import annotations

import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from realtime import closecodes
from tests.rawsocket import OP_TEXT, RawClient, frame
from tests.serverprocess import ServerProcess
from tests.support import clientFrame, handshake

#: how long a test waits for the server to answer
TIMEOUT = 10.0


def upgrade(port: int, source: str, forwardedFor: str | None = None) -> tuple[socket.socket, str]:
    """
    Open a connection from C{source}, ask for a WebSocket, and return the
    socket and the response head.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    headers = {"X-Forwarded-For": forwardedFor} if forwardedFor else None
    sock.sendall(handshake("/", headers))
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return sock, data.partition(b"\r\n\r\n")[0].decode("latin-1")


def status(head: str) -> int:
    return int(head.split()[1]) if head else 0


class ConnectionLimitTests(SynchronousTestCase):
    """
    C{--max-connections-per-ip 3 --trust-proxy 127.0.0.2 --max-connections 9}.
    """

    def setUp(self) -> None:
        self.server = ServerProcess(
            "--max-connections-per-ip", "3", "--trust-proxy", "127.0.0.2", "--max-connections", "9"
        ).start()
        self.addCleanup(self.server.stop)
        self.port = self.server.ports["port"]
        self.sockets: list[socket.socket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    def open(self, source: str, forwardedFor: str | None = None) -> str:
        sock, head = upgrade(self.port, source, forwardedFor)
        self.sockets.append(sock)
        if status(head) == 101:
            sock.sendall(clientFrame(b"u%d" % len(self.sockets)))
        return head

    def test_limits(self) -> None:
        """
        The 4th connection of an address is refused with 429 and
        C{Retry-After}; X-Forwarded-For counts only from the trusted proxy;
        past the total, 503; a closed connection makes room again.
        """
        # an untrusted peer's X-Forwarded-For is ignored: all three are 127.0.0.1
        for n in range(3):
            self.assertEqual(status(self.open("127.0.0.1", f"203.0.113.{n}")), 101)
        refused = self.open("127.0.0.1", "203.0.113.9")
        self.assertEqual(status(refused), 429, refused)
        self.assertIn("\r\nRetry-After: 10", refused)
        # through the trusted proxy each forwarded client has its own three
        for _ in range(3):
            self.assertEqual(status(self.open("127.0.0.2", "198.51.100.1")), 101)
        self.assertEqual(status(self.open("127.0.0.2", "1.1.1.1, 198.51.100.1")), 429)
        self.assertEqual(status(self.open("127.0.0.2", "198.51.100.2")), 101)
        # the proxy itself, naming nobody, is not counted per address
        for _ in range(2):
            self.assertEqual(status(self.open("127.0.0.2")), 101)
        # 9 open: the total is reached
        full = self.open("127.0.0.2", "198.51.100.3")
        self.assertEqual(status(full), 503, full)
        self.assertIn("\r\nRetry-After: 10", full)
        self.sockets.pop(0).close()
        deadline = time.monotonic() + TIMEOUT
        while status(self.open("127.0.0.1")) != 101:
            self.assertLess(time.monotonic(), deadline, "the closed connection's slot never came back")


class OpenConnectionLimitTests(SynchronousTestCase):
    """
    C{--max-connections-per-uid 2 --client-rate 5:5} on a real server.
    """

    def setUp(self) -> None:
        self.server = ServerProcess("--routing", "echo", "--max-connections-per-uid", "2", "--client-rate", "5:5").start()
        self.addCleanup(self.server.stop)

    def client(self) -> RawClient:
        client = RawClient(self.server.ports["port"])
        self.addCleanup(client.close)
        return client

    def test_perUid(self) -> None:
        """
        A third connection naming the same uid is closed with 4008; the two
        before it keep working.
        """
        first, second, third = self.client(), self.client(), self.client()
        for client in (first, second):
            client.send(frame(b"alice"), frame(b"hi"))
            self.assertEqual(client.readMessage(), (OP_TEXT, b"hi"))
        third.send(frame(b"alice"))
        self.assertEqual(third.closeCode(), closecodes.TOO_MANY_CONNECTIONS)
        first.send(frame(b"still here"))
        self.assertEqual(first.readMessage(), (OP_TEXT, b"still here"))

    def test_clientRate(self) -> None:
        """
        Ten messages at once against a burst of five: five echoed, then 4029.
        """
        client = self.client()
        client.send(frame(b"bob"), *(frame(b"%d" % n) for n in range(10)))
        self.assertEqual([client.readMessage() for _ in range(5)], [(OP_TEXT, b"%d" % n) for n in range(5)])
        self.assertEqual(client.closeCode(), closecodes.RATE_LIMITED)
