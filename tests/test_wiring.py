"""
Tests for L{realtime.wiring} and L{realtime.tap.addListeners}: the parts
C{buildCore} makes are connected to each other (a push through the core's
line port reaches a session in the core's registry; readiness and the
metrics read the core's broker and store), and the listeners serve them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from prometheus_client import generate_latest
from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from realtime.interfaces import IBroker, IPublisher
from realtime.services import SessionsService
from realtime.tap import addListeners
from tests.fakes import FakeSession, FaultyStore
from tests.serverprocess import environment, twistdCommand
from tests.support import buildCore

BASE = ("--store", "memory", "--api-key", "k", "--port", "tcp:0", "--api-port", "tcp:0", "--push-port", "tcp:0")


def readyz(core: Any) -> tuple[int, dict[str, Any]]:
    """
    Render the core's C{/readyz} and let its probes answer.
    """
    request = DummyRequest([b""])
    body = core.ready.render(request)
    core.reactor.advance(0)
    written = body if isinstance(body, bytes) else b"".join(request.written)
    return request.responseCode or 200, json.loads(written)


class CoreTests(SynchronousTestCase):
    """
    L{realtime.wiring.buildCore} builds one server whose parts know each other.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.core = buildCore(self.reactor, *BASE)
        # readiness is 503 until the server runs (and while it stops)
        [sessions] = [s for s in self.core.services if isinstance(s, SessionsService)]
        sessions.startService()
        self.addCleanup(sessions.stopService)

    def test_connected(self) -> None:
        """
        The factory, the router, the broker, the counters share one
        registry and one broker; the router is a publisher over the broker,
        not a broker.
        """
        core = self.core
        self.assertIs(core.factory.router, core.router)
        self.assertIs(core.factory.registry, core.registry)
        self.assertIs(core.factory.clock, self.reactor)
        self.assertIs(core.factory.fanout, core.fanout)
        self.assertIs(core.broker.fanout, core.fanout)  # type: ignore[attr-defined]
        self.assertIs(core.router.registry, core.registry)
        self.assertIs(core.router.broker, core.broker)
        self.assertIs(core.counters.broker, core.broker)
        self.assertTrue(verifyObject(IBroker, core.broker))
        self.assertTrue(verifyObject(IPublisher, core.router))
        self.assertFalse(IBroker.providedBy(core.router))
        self.assertIs(core.line.writer, core.factory.writer)  # type: ignore[union-attr]

    def test_linePushReachesSession(self) -> None:
        """
        A line pushed to the core's line port reaches the session the
        core's WebSocket factory registered, and is answered at once.
        """
        session = FakeSession("u1")
        self.core.factory.sessionOpened(session)
        self.assertEqual(list(self.core.registry.sessionsOf("u1")), [session])
        line = self.core.line.buildProtocol(None)  # type: ignore[union-attr]
        transport = StringTransport()
        line.makeConnection(transport)
        line.dataReceived(b'{"uid":"u1","x":1}\n{"uid":"nobody"}\n')
        self.reactor.advance(0)
        self.assertEqual(transport.value(), b"ok\nfail\n")
        self.assertEqual(session.texts, ['{"uid":"u1","x":1}'])
        self.assertEqual(self.core.counters.snapshot()["linePort"]["ok"], 1)
        self.assertEqual(self.core.latency.count(("line", "uid")), 2)

    def test_readinessFollowsBroker(self) -> None:
        """
        C{/readyz} is 503 with the core's broker's problem while it has one,
        and C{realtime_broker_up} is 0 meanwhile.
        """
        self.assertEqual(readyz(self.core), (200, {"ready": True, "checks": {"broker": "ok", "store": "ok"}}))
        self.core.broker.problem = "no route to redis"  # type: ignore[misc]
        status, body = readyz(self.core)
        self.assertEqual((status, body["checks"]["broker"]), (503, "failed: no route to redis"))
        metrics = generate_latest(self.core.web.web.resource.children[b"metrics"].registry)  # type: ignore[attr-defined]
        self.assertIn(b'realtime_broker_up{broker="memory"} 0.0', metrics)

    def test_readinessFollowsStore(self) -> None:
        """
        C{/readyz} is 503 with the core's store's failure while it fails,
        and 200 once it works again.
        """
        faulty = FaultyStore(self.core.store.inner)  # type: ignore[attr-defined]
        self.core.store.inner = faulty  # type: ignore[attr-defined]
        faulty.fault = OSError("disk I/O error")
        status, body = readyz(self.core)
        self.assertEqual((status, body["checks"]["store"]), (503, "failed: message store unavailable (disk I/O error)"))
        self.flushLoggedErrors(OSError)
        faulty.fault = None
        self.assertEqual(readyz(self.core)[0], 200)

    def test_noApiNoLine(self) -> None:
        """
        With the backend ports off, the core has neither, and only C{--port}
        gets a listener.
        """
        core = buildCore(self.reactor, "--store", "memory", "--port", "tcp:0", "--api-port", "none", "--push-port", "none")
        self.assertIsNone(core.api)
        self.assertIsNone(core.line)
        self.assertNotIn("linePort", core.counters.snapshot())
        service = MultiService()
        addListeners(core, _options("--store", "memory", "--port", "tcp:0", "--api-port", "none", "--push-port", "none"), service)
        self.assertEqual([child.option for child in service], ["port"])  # type: ignore[attr-defined]

    def test_listeners(self) -> None:
        """
        L{addListeners} listens on each option's endpoint with the core's
        factory for it, and records each bound port in the core.
        """
        service = MultiService()
        addListeners(self.core, _options(*BASE), service)
        self.assertEqual([child.option for child in service], ["port", "api-port", "push-port"])  # type: ignore[attr-defined]
        service.privilegedStartService()
        factories = [tcp[1] for tcp in self.reactor.tcpServers]
        self.assertEqual(factories, [self.core.web, self.core.api, self.core.line])
        self.assertEqual(sorted(self.core.ports), ["api-port", "port", "push-port"])

    def test_pluginOptionRefused(self) -> None:
        """
        A plugin refusing its options is refused by C{buildCore}, naming
        the option, as C{Options} refuses its own.
        """
        error = self.assertRaises(
            usage.UsageError, buildCore, self.reactor, *BASE, "--auth", "uid-first-packet", "--auth-option", "timeout=x"
        )
        self.assertIn("--auth uid-first-packet: option 'timeout'", str(error))


def _options(*argv: str) -> Any:
    from realtime.config.options import Options

    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsBuildNothingTests(SynchronousTestCase):
    """
    C{Options} parses and checks; it neither imports the reactor nor builds
    a plugin.
    """

    def test_noReactorNoObjects(self) -> None:
        """
        Parsing every default leaves the reactor unimported and no plugin
        built.
        """
        home = self.mktemp()
        os.makedirs(home)
        script = (
            "import sys\n"
            "from realtime.config.options import Options\n"
            "o = Options(); o.parseOptions([])\n"
            "print('twisted.internet.reactor' in sys.modules, 'authenticator' in o, o['auth-factory'].name)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], env=environment(), cwd=home, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.stdout.split(), ["False", "False", "uid-first-packet"], result.stderr)

    def test_twistdPluginOptionError(self) -> None:
        """
        Through a real C{twistd realtime}, a plugin's bad option is
        answered like a bad option of ours: the error first, exit status 1.
        """
        home = self.mktemp()
        os.makedirs(home)
        result = subprocess.run(
            [*twistdCommand(), "-n", "--pidfile=", "realtime", "--auth-option", "timeout=x"],
            env=environment(),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1)
        lines = (result.stderr + result.stdout).splitlines()
        self.assertIn("--auth uid-first-packet: option 'timeout'", lines[0])
        self.assertLess(len(lines), 5, lines)
