"""
A third party's plugin, written against C{realtime.plugin} alone and laid
out as its installed distribution is (a package and a ``twisted/plugins/``
dropin on the path), found by discovery and used by a real server: a
handshake-time ticket, or a ticket as the first message, with the optional
first-message and warnings hooks.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import twisted.plugins
from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from realtime import closecodes
from realtime.config.discovery import describe, discover
from realtime.interfaces import IFirstMessageAuthenticator, IWarnings
from realtime.testing import AuthenticationAttempt, makeHandshakeRequest, verifyPlugin
from tests.pluginsource import realtimeImports, writeDistribution
from tests.serverprocess import ROOT, ServerProcess, api, waitUntil

#: acme_realtime/auth.py, as Acme would write it
AUTH = '''
"""
Acme's tickets: given in the query (?ticket=...), or as the first message.
"""

from realtime.plugin import (
    Accept,
    AwaitFirstMessage,
    Deny,
    IAuthenticatorFactory,
    IFirstMessageAuthenticator,
    Identity,
    IPlugin,
    IWarnings,
    PluginOptions,
    checkUid,
    closecodes,
    implementer,
)


@implementer(IFirstMessageAuthenticator, IWarnings)
class AcmeAuthenticator:
    def __init__(self, tickets, timeout):
        self.tickets = tickets
        self.timeout = timeout

    def checkHandshake(self, request):
        ticket = request.param("ticket")
        if ticket is None:
            return AwaitFirstMessage(self.timeout)
        return self.decide(ticket, Deny(403, "unknown ticket"))

    def checkFirstMessage(self, request, payload, isBinary):
        return self.decide(payload.decode("utf-8", "replace"), Deny(closecodes.AUTH_FAILED, "unknown ticket"))

    def decide(self, ticket, refusal):
        uid = self.tickets.get(ticket)
        return Accept(Identity(uid=checkUid(uid))) if uid else refusal

    def warnings(self):
        return ["acme: the tickets are on the command line"]


@implementer(IPlugin, IAuthenticatorFactory)
class AcmeAuthenticatorFactory:
    name = "acme"
    description = "Acme's tickets, in the query or as the first message"
    options = {
        "tickets": "TICKET/UID pairs, comma-separated (required)",
        "timeout": "seconds to wait for the first message (default 10)",
    }

    def buildAuthenticator(self, options, reactor):
        opts = PluginOptions(self.name, options, self.options)
        pairs = [pair.split("/", 1) for pair in opts.string("tickets", required=True).split(",")]
        return AcmeAuthenticator({t: u for t, u in pairs}, opts.number("timeout", 10.0, minimum=0.1))
'''

#: twisted/plugins/acme_realtime_plugin.py, the dropin its setup.py installs
DROPIN = '''
from acme_realtime.auth import AcmeAuthenticatorFactory

acmeAuth = AcmeAuthenticatorFactory()
'''

OPTIONS = {"tickets": "t1/alice,t2/bob", "timeout": "0.5"}


class SourceTests(SynchronousTestCase):
    """
    The plugin is written against the façade alone.
    """

    def test_imports(self) -> None:
        """
        Of this project, its module imports C{realtime.plugin} and nothing
        else, and its dropin imports nothing.
        """
        self.assertEqual(realtimeImports(AUTH), {"realtime.plugin"})
        self.assertEqual(realtimeImports(DROPIN), set())


class DiscoveryTests(SynchronousTestCase):
    """
    Installed on the path, it is discovered like a built-in.
    """

    def setUp(self) -> None:
        self.root = writeDistribution(os.path.abspath(self.mktemp()), "acme_realtime", {"auth": AUTH}, DROPIN)
        plugins = os.path.join(self.root, "twisted", "plugins")
        # what twisted/plugins/__init__.py does for every sys.path entry at
        # its import, which happened long before this test put one there
        sys.path.insert(0, self.root)
        twisted.plugins.__path__.append(plugins)
        self.addCleanup(self.forget, plugins)

    def forget(self, plugins: str) -> None:
        sys.path.remove(self.root)
        twisted.plugins.__path__.remove(plugins)
        for name in [m for m in sys.modules if m.startswith("acme_realtime") or m.endswith("acme_realtime_plugin")]:
            del sys.modules[name]

    def test_found(self) -> None:
        """
        Discovery finds it, lists its options, and what it builds provides
        the hooks it declares.
        """
        catalog = discover()
        self.assertEqual([p for p in catalog.problems if "acme" in p], [])
        plugin = catalog.auth.find("acme")
        self.assertIn("tickets=...", describe(catalog))
        auth = verifyPlugin(plugin, OPTIONS)
        self.assertTrue(IFirstMessageAuthenticator.providedBy(auth))
        self.assertEqual(list(auth.warnings()), ["acme: the tickets are on the command line"])
        self.assertTrue(IWarnings.providedBy(auth))
        attempt = AuthenticationAttempt(auth, makeHandshakeRequest("/?ticket=t1"))
        self.assertEqual(attempt.identity.uid, "alice")
        attempt = AuthenticationAttempt(auth, makeHandshakeRequest())
        attempt.send("nope")
        self.assertEqual(attempt.closed, (closecodes.AUTH_FAILED, "unknown ticket"))


class ServerTests(SynchronousTestCase):
    """
    A real C{twistd -n realtime} with the distribution on its path, and real
    WebSocket clients.
    """

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = root = writeDistribution(tempfile.mkdtemp(prefix="realtime-acme-"), "acme_realtime", {"auth": AUTH}, DROPIN)
        options = ["--auth", "acme"] + [a for k, v in OPTIONS.items() for a in ("--auth-option", f"{k}={v}")]
        cls.server = ServerProcess(*options, launcher=["env", f"PYTHONPATH={root}{os.pathsep}{ROOT}"]).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def online(self, uid: str) -> int:
        return api(self.server, "GET", f"/api/online?uid={uid}")[1]["online"][uid]

    def test_warned(self) -> None:
        """
        Its C{warnings()} are logged loudly at startup.
        """
        self.server.waitFor("INSECURE: acme: the tickets are on the command line")

    def test_handshakeAccepted(self) -> None:
        """
        A ticket in the query connects as its uid, who receives pushes.
        """
        with connect(self.server.url("/?ticket=t1")) as ws:
            waitUntil(lambda: self.online("alice") == 1)
            self.assertEqual(api(self.server, "POST", "/api/push", b'{"uid":"alice","data":"hi alice"}')[0], 200)
            self.assertEqual(ws.recv(timeout=5), "hi alice")

    def test_handshakeDenied(self) -> None:
        """
        An unknown ticket in the query is refused at the handshake, 403.
        """
        with self.assertRaises(InvalidStatus) as caught:
            connect(self.server.url("/?ticket=nope"))
        self.assertEqual(caught.exception.response.status_code, 403)

    def test_firstMessageAccepted(self) -> None:
        """
        Without one in the query, the first message is the ticket.
        """
        with connect(self.server.url("/")) as ws:
            ws.send("t2")
            waitUntil(lambda: self.online("bob") == 1)
            self.assertEqual(api(self.server, "POST", "/api/push", b'{"uid":"bob","data":"hi bob"}')[0], 200)
            self.assertEqual(ws.recv(timeout=5), "hi bob")

    def test_firstMessageDenied(self) -> None:
        """
        A wrong first message closes with the plugin's code and reason.
        """
        with connect(self.server.url("/")) as ws:
            ws.send("nope")
            with self.assertRaises(ConnectionClosed) as caught:
                ws.recv(timeout=5)
        self.assertEqual((caught.exception.rcvd.code, caught.exception.rcvd.reason), (closecodes.AUTH_FAILED, "unknown ticket"))

    def test_firstMessageTimeout(self) -> None:
        """
        Silence past the plugin's timeout closes with C{AUTH_TIMEOUT}.
        """
        with connect(self.server.url("/")) as ws:
            with self.assertRaises(ConnectionClosed) as caught:
                ws.recv(timeout=5)
        self.assertEqual(caught.exception.rcvd.code, closecodes.AUTH_TIMEOUT)
