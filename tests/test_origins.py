"""
C{--allowed-origin}: L{realtime.core.origins.OriginPolicy}, the option's
checks, and a real server's answers.  (Both handshake paths giving the same
answer is in C{tests/test_websocket_handshake.py}.)
"""

from __future__ import annotations

import os
import socket

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from realtime.config.options import Options
from realtime.core.origins import OriginPolicy, parseOrigin
from tests.serverprocess import ServerProcess
from tests.support import handshake


class ParseOriginTests(SynchronousTestCase):
    """
    L{parseOrigin} reads an C{Origin} header.
    """

    def test_origins(self) -> None:
        """
        Scheme, host and port, the default port filled in, case ignored;
        C{null} and C{file:} are pages without an origin; anything else
        is not an origin.
        """
        self.assertEqual(parseOrigin("https://Good.Example"), ("https", "good.example", 443))
        self.assertEqual(parseOrigin("http://localhost:3000"), ("http", "localhost", 3000))
        self.assertEqual(parseOrigin("http://[::1]:8080"), ("http", "::1", 8080))
        self.assertEqual(parseOrigin("chrome-extension://abc"), ("chrome-extension", "abc", None))
        self.assertEqual(parseOrigin("null"), "null")
        self.assertEqual(parseOrigin("file://"), "null")
        for bad in ("nonsense", "https://", "https://a:99999", "https://a/path", "//a"):
            self.assertIsNone(parseOrigin(bad), bad)


class OriginPolicyTests(SynchronousTestCase):
    """
    Patterns as people write them.
    """

    def test_default(self) -> None:
        """
        No pattern, or C{*} alone: every origin, C{null} included.
        """
        for policy in (OriginPolicy(), OriginPolicy(["*"])):
            self.assertTrue(policy.anyOrigin)
            for origin in ("https://a.example", "null", "http://127.0.0.1:9"):
                self.assertTrue(policy.allows(origin))

    def test_defaultPort(self) -> None:
        """
        A pattern without a port means the scheme's default one, whether
        the browser leaves it out (it does) or spells it.
        """
        policy = OriginPolicy(["https://good.example"])
        self.assertTrue(policy.allows("https://good.example"))
        self.assertTrue(policy.allows("https://good.example:443"))
        self.assertFalse(policy.allows("https://good.example:8443"))
        self.assertFalse(policy.allows("http://good.example"))
        self.assertFalse(policy.allows("https://good.example.evil.test"))
        self.assertTrue(OriginPolicy(["https://good.example:443/"]).allows("https://good.example"))

    def test_wildcards(self) -> None:
        """
        C{*} matches anything in the part where it stands.
        """
        policy = OriginPolicy(["https://*.example.com", "http://localhost:*"])
        self.assertTrue(policy.allows("https://a.b.example.com"))
        self.assertFalse(policy.allows("https://example.com"))
        self.assertFalse(policy.allows("https://a.example.com:8443"))
        self.assertTrue(policy.allows("http://localhost:5173"))
        self.assertTrue(policy.allows("http://localhost"))
        self.assertFalse(policy.allows("http://localhost.evil.test"))

    def test_null(self) -> None:
        """
        A list admits pages opened from files only if it names C{null}.
        """
        self.assertFalse(OriginPolicy(["https://good.example"]).allows("null"))
        policy = OriginPolicy(["https://good.example", "null"])
        self.assertTrue(policy.allows("null"))
        self.assertTrue(policy.allows("file://"))
        self.assertFalse(policy.allows("https://evil.test"))

    def test_malformed(self) -> None:
        """
        A malformed C{Origin} is never admitted by a list.
        """
        self.assertFalse(OriginPolicy(["https://*"]).allows("nonsense"))

    def test_badPatterns(self) -> None:
        """
        A pattern that is not an origin is refused, saying how to write one.
        """
        for bad in ("good.example", "https://good.example/app", "https://good.example:x", "https://"):
            with self.assertRaises(ValueError) as caught:
                OriginPolicy([bad])
            self.assertIn("https://", str(caught.exception), bad)

    def test_option(self) -> None:
        """
        The option refuses a bad pattern at startup, naming itself.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(home)

        def parse(*argv: str) -> Options:
            options = Options()
            options.parseOptions(list(argv))
            return options

        with self.assertRaises(usage.UsageError) as caught:
            parse("--allowed-origin", "good.example")
        self.assertIn("--allowed-origin 'good.example' is not an origin", str(caught.exception))
        self.assertTrue(parse("--allowed-origin", "https://good.example")["origin-policy"].allows("https://good.example"))


def status(port: int, origin: str) -> bytes:
    """
    The status line a real server answers a WebSocket handshake from a
    page of C{origin} with.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(handshake("/", headers={"Origin": origin}))
        data = b""
        while b"\r\n" not in data and (chunk := s.recv(4096)):
            data += chunk
    return data.split(b"\r\n", 1)[0]


class ServerOriginTests(SynchronousTestCase):
    """
    A real server, with the default and with a list.
    """

    def test_list(self) -> None:
        """
        C{--allowed-origin https://good.example} admits the origin a browser
        sends from that site, refuses others with 403.
        """
        server = ServerProcess("--allowed-origin", "https://good.example").start()
        try:
            port = server.ports["port"]
            self.assertTrue(status(port, "https://good.example").startswith(b"HTTP/1.1 101 "))
            self.assertTrue(status(port, "https://evil.example").startswith(b"HTTP/1.1 403 "))
            self.assertTrue(status(port, "null").startswith(b"HTTP/1.1 403 "))
        finally:
            server.stop()

    def test_default(self) -> None:
        """
        By default a page opened from a file connects too.
        """
        server = ServerProcess().start()
        try:
            self.assertTrue(status(server.ports["port"], "null").startswith(b"HTTP/1.1 101 "))
            self.assertTrue(status(server.ports["port"], "https://any.example").startswith(b"HTTP/1.1 101 "))
        finally:
            server.stop()
