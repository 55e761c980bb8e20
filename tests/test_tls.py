"""
``ssl:`` endpoints for ``--port`` and ``--api-port`` against a real
``twistd -n realtime`` with a self-signed certificate made in the test: curl
(which offers ALPN, as every browser does) gets ``/healthz`` and the API's
answers, and a client offering ``h2`` and ``http/1.1`` is given
``http/1.1``, the one protocol the server speaks.  (The browser opening
``wss://`` is in C{tests/test_browser_tls.py}.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import issuedThroughIntermediate, sslEndpoint
from tests.serverprocess import API_KEY, ServerProcess, tlsServer

TIMEOUT = 10.0


def curlCommand() -> str:
    """
    The curl binary; a skip when it is absent, a failure when
    C{REALTIME_REQUIRE_CURL} is set (as CI sets it).
    """
    found = shutil.which("curl")
    if found:
        return found
    if os.environ.get("REALTIME_REQUIRE_CURL"):
        raise AssertionError("REALTIME_REQUIRE_CURL is set but curl is not installed (apt-get install curl)")
    raise SkipTest("curl is not installed (apt-get install curl); set REALTIME_REQUIRE_CURL to fail instead")


def clientContext(certPath: str, alpn: list[str] | None) -> ssl.SSLContext:
    """
    A client context that trusts only the test's certificate and offers
    C{alpn}.
    """
    context = ssl.create_default_context(cafile=certPath)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class TLSTests(SynchronousTestCase):
    """
    One TLS server for the class.
    """

    @classmethod
    def setUpClass(cls) -> None:
        cls.server, cls.certPath = tlsServer()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def curl(self, port: str, path: str, *args: str) -> tuple[int, str, str]:
        """
        C{curl} (verifying the certificate, offering ALPN as it does by
        default) against C{path} on the server's C{port}: the status, the
        body and curl's verbose trace.
        """
        url = f"https://127.0.0.1:{self.server.ports[port]}{path}"
        command = [curlCommand(), "-sS", "-v", "--cacert", self.certPath, "-o", "-", "-w", "\n%{http_code}"]
        done = subprocess.run([*command, *args, url], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body, done.stderr

    def test_curlWebPort(self) -> None:
        """
        curl with ALPN gets C{/healthz} over https on the web port, and
        the server chose C{http/1.1}.
        """
        status, body, trace = self.curl("port", "/healthz")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        self.assertIn("ALPN: server accepted http/1.1", trace)

    def test_curlApiPort(self) -> None:
        """
        The same on the API port: an authenticated call answers.
        """
        status, body, trace = self.curl("api-port", "/api/stats", "-H", f"Authorization: Bearer {API_KEY}")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["connections"], 0)
        self.assertIn("ALPN: server accepted http/1.1", trace)

    def negotiate(self, port: str, path: str) -> tuple[str | None, bytes]:
        """
        Offer C{h2} and C{http/1.1} on C{port}: the protocol chosen, and
        the first line of the answer to C{GET path}.
        """
        context = clientContext(self.certPath, ["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", self.server.ports[port]), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                chosen = tls.selected_alpn_protocol()
                tls.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
                answer = b""
                while b"\r\n" not in answer and (chunk := tls.recv(4096)):
                    answer += chunk
        return chosen, answer.split(b"\r\n", 1)[0]

    def test_alpnWebPort(self) -> None:
        """
        A client offering C{h2} first gets C{http/1.1} on the web port, and
        an HTTP/1.1 answer.
        """
        self.assertEqual(self.negotiate("port", "/healthz"), ("http/1.1", b"HTTP/1.1 200 OK"))

    def test_alpnApiPort(self) -> None:
        """
        And on the API port (a request without the key: a 401, in HTTP/1.1).
        """
        self.assertEqual(self.negotiate("api-port", "/api/stats"), ("http/1.1", b"HTTP/1.1 401 Unauthorized"))

    def test_withoutAlpn(self) -> None:
        """
        A client that offers no ALPN still connects (no protocol chosen).
        """
        context = clientContext(self.certPath, None)
        with socket.create_connection(("127.0.0.1", self.server.ports["port"]), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                self.assertIsNone(tls.selected_alpn_protocol())


class ChainTests(SynchronousTestCase):
    """
    A certificate issued through an intermediate CA, served as README.rst
    says (C{certKey} the certificate, C{extraCertChain} the
    intermediate), verifies for a client that trusts only the root; given
    as C{certKey=fullchain.pem} the intermediate is not sent.
    """

    def verifies(self, files: dict[str, str], *extra: str) -> bool:
        endpoint = sslEndpoint(files["key"], files[extra[0]], *extra[1:])
        server = ServerProcess("--port", endpoint, "--api-port", "none", "--push-port", "none", defaultPorts=False)
        server.start(expect=("port",))
        try:
            context = clientContext(files["root"], ["http/1.1"])
            with socket.create_connection(("127.0.0.1", server.ports["port"]), timeout=TIMEOUT) as raw:
                try:
                    context.wrap_socket(raw, server_hostname="localhost").close()
                except ssl.SSLCertVerificationError:
                    return False
            return True
        finally:
            server.stop()

    def test_extraCertChain(self) -> None:
        """
        C{extraCertChain} sends the intermediate; C{fullchain.pem} alone does not.
        """
        files = issuedThroughIntermediate()
        self.assertTrue(self.verifies(files, "cert", f"extraCertChain={files['chain']}"))
        self.assertFalse(self.verifies(files, "fullchain"))
