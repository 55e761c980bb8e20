"""
The tests' C{wss://} client (C{tests/tlsclient.py}) against a real
C{twistd -n realtime} over TLS: what it decrypts reaches websockets whole,
however many records arrive at once, and a close is a clean one.
"""

from __future__ import annotations

import json
import ssl
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.serverprocess import linePush, tlsServer, waitUntil
from tests.tlsclient import SerializedTLSSocket, connectTLS


class SerializedTLSSocketTests(SynchronousTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.server, certPath = tlsServer()
        cls.context = ssl.create_default_context(cafile=certPath)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def url(self) -> str:
        return f"wss://127.0.0.1:{self.server.ports['port']}/"

    def test_manyRecordsAtOnce(self) -> None:
        """
        Pushes far larger than a TLS record (16 KiB), sent back to back, all
        arrive: the client hands on every record it has, not only the first
        (websockets would wait on the socket for the rest, forever).
        """
        big = ["x" * 300_000, "y" * 70_000, "z"]
        with connectTLS(self.url(), self.context) as ws:
            self.assertIsInstance(ws.socket, SerializedTLSSocket)
            ws.send("tls-client")
            port = self.server.ports["push-port"]
            ready = json.dumps({"uid": "tls-client", "data": "ready"}).encode() + b"\n"
            # pushed until the session holds the uid (one may be queued first)
            waitUntil(lambda: linePush(port, ready) == [b"ok"], 10)
            lines = [json.dumps({"uid": "tls-client", "data": data}).encode() + b"\n" for data in big]
            self.assertEqual(linePush(port, *lines), [b"ok"] * len(big))
            received: list[str] = []
            while len(received) < len(big):
                data = json.loads(ws.recv(timeout=10))["data"]
                if data != "ready":
                    received.append(data)
            self.assertEqual(received, big)

    def test_closeIsClean(self) -> None:
        """
        The close handshake goes through the session, and ends at once: the
        server's close_notify, come in the same bytes as its close frame, is
        answered (else websockets, waiting on the socket for the end, would
        wait out its close_timeout).
        """
        started = time.monotonic()
        with connectTLS(self.url(), self.context, close_timeout=60) as ws:
            ws.send("tls-closer")
        self.assertEqual(ws.protocol.close_rcvd.code, 1000)
        self.assertLess(time.monotonic() - started, 30)
