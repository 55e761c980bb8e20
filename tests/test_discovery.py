"""
Tests for L{realtime.config.discovery}: built-ins and third-party plugins are found
the same way, checked, and broken ones reported by file name.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from realtime.config.discovery import PluginSet, addPluginDirectories, describe, discover, pluginWarnings
from realtime.config.options import Options
from realtime.interfaces import IAuthenticatorFactory, IRoutingStrategyFactory, IWarnings
from realtime.testing import AuthenticationAttempt, makeHandshakeRequest, verifyPlugin
from realtime.values import Deny
from tests.pluginsource import PluginDirectoryMixin, realtimeImports
from tests.support import buildPlugins

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "plugins", "example_auth.py")

BROKEN = "import this_module_does_not_exist_anywhere\n"

#: a plugin whose authenticator declares IWarnings but has no warnings()
BROKEN_BUILD = '''
from realtime.plugin import Accept, IAuthenticator, IAuthenticatorFactory, IPlugin, Identity, IWarnings, implementer

@implementer(IAuthenticator, IWarnings)
class Forgetful:
    def checkHandshake(self, request):
        return Accept(Identity("u"))

@implementer(IPlugin, IAuthenticatorFactory)
class ForgetfulFactory:
    name = "forgetful"
    description = "declares a hook it lacks"
    options = {}

    def buildAuthenticator(self, options, reactor):
        return Forgetful()

forgetful = ForgetfulFactory()
'''

NOT_A_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer
from realtime.plugin import IAuthenticatorFactory

@implementer(IPlugin, IAuthenticatorFactory)
class Half:
    name = "half"
    # no description, options or buildAuthenticator: verifyObject refuses it

half = Half()
'''


class DiscoveryTests(PluginDirectoryMixin, SynchronousTestCase):
    """
    L{discover} finds plugins over C{twisted.plugins}.
    """

    def test_builtins(self) -> None:
        """
        The built-in plugins are found through getPlugins and are verified.
        """
        catalog = discover()
        self.assertTrue({"uid-first-packet", "anonymous", "wechat", "token"} <= set(catalog.auth.byName))
        self.assertTrue({"uid", "chat", "echo"} <= set(catalog.routing.byName))
        for plugin in catalog.auth.byName.values():
            self.assertTrue(verifyObject(IAuthenticatorFactory, plugin))
        for plugin in catalog.routing.byName.values():
            self.assertTrue(verifyObject(IRoutingStrategyFactory, plugin))

    def test_exampleFromPluginDir(self) -> None:
        """
        The shipped example, dropped in a plugin directory, is discovered,
        listed and works.
        """
        directory = self.pluginDirectory()
        self.addFile(directory, source=EXAMPLE)
        catalog = discover([directory])
        factory = catalog.auth.find("proxy-header")
        self.assertIn("proxy-header", describe(catalog))
        self.assertIn("trusted-peer=...", describe(catalog))
        auth = verifyPlugin(factory, {"trusted-peer": "10.0.0.1"})
        request = makeHandshakeRequest(headers={"X-Forwarded-User": "alice"}, peer="10.0.0.1")
        attempt = AuthenticationAttempt(auth, request)
        self.assertEqual((attempt.state, attempt.identity.uid), ("open", "alice"))
        direct = makeHandshakeRequest(headers={"X-Forwarded-User": "alice"}, peer="10.9.9.9")
        self.assertEqual(AuthenticationAttempt(auth, direct).refused, Deny(403, "connect through the proxy"))
        missing = makeHandshakeRequest(peer="10.0.0.1")
        self.assertEqual(AuthenticationAttempt(auth, missing).refused, Deny(401, "x-forwarded-user header: empty uid"))
        with open(EXAMPLE) as f:
            self.assertEqual(realtimeImports(f.read()), {"realtime.plugin"})

    def test_brokenFileReported(self) -> None:
        """
        A dropin that fails to import is reported by file name, and the other
        plugins, in the same directory and elsewhere, are still found.
        """
        directory = self.pluginDirectory()
        broken = self.addFile(directory, BROKEN)
        self.addFile(directory, source=EXAMPLE)
        catalog = discover([directory])
        self.flushLoggedErrors(ImportError)
        [problem] = [p for p in catalog.problems if broken in p]
        self.assertIn(os.path.join(os.path.abspath(directory), broken + ".py"), problem)
        self.assertIn("this_module_does_not_exist_anywhere", problem)
        self.assertIn("proxy-header", catalog.auth.byName)
        self.assertIn("wechat", catalog.auth.byName)
        self.assertIn(broken, describe(catalog))

    def test_notProvidingReported(self) -> None:
        """
        A plugin claiming an interface it does not provide is refused by
        verifyObject and reported.
        """
        directory = self.pluginDirectory()
        self.addFile(directory, NOT_A_PLUGIN)
        catalog = discover([directory])
        self.assertNotIn("half", catalog.auth.byName)
        self.assertTrue(any("does not provide IAuthenticatorFactory" in p for p in catalog.problems), catalog.problems)

    def test_unknownName(self) -> None:
        """
        An unknown name is refused with the list of known ones.
        """
        plugins: PluginSet[object] = PluginSet("auth", "auth", {"b": object(), "a": object()})
        e = self.assertRaises(usage.UsageError, plugins.find, "zz")
        self.assertEqual(str(e), "unknown auth 'zz' (--auth); available: a, b")

    def test_missingDirectory(self) -> None:
        """
        A plugin directory that does not exist is refused by name.
        """
        e = self.assertRaises(usage.UsageError, addPluginDirectories, ["/no/such/dir"])
        self.assertIn("/no/such/dir", str(e))

    def test_builtChecked(self) -> None:
        """
        What a plugin builds is checked at startup against every optional
        interface it declares: a declared hook that is missing stops the
        start naming the plugin, not the first connection that needs it.
        """
        directory = self.pluginDirectory()
        self.addFile(directory, BROKEN_BUILD)
        options = Options()
        options.parseOptions(["--plugin-dir", directory, "--auth", "forgetful"])
        e = self.assertRaises(usage.UsageError, buildPlugins, options, Clock())
        self.assertIn("--auth 'forgetful' built", str(e))
        self.assertIn("warnings", str(e))


class WarningsTests(SynchronousTestCase):
    """
    L{pluginWarnings} gathers what built plugins announce.
    """

    def test_providers(self) -> None:
        """
        Each plugin providing L{IWarnings} is asked, in order; the others
        are skipped.
        """

        @implementer(IWarnings)
        class Loud:
            def __init__(self, *said: str) -> None:
                self.said = list(said)

            def warnings(self) -> list[str]:
                return self.said

        self.assertEqual(pluginWarnings(Loud("a", "b"), object(), Loud("c")), ["a", "b", "c"])
        self.assertEqual(pluginWarnings(object()), [])
