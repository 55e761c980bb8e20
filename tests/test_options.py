"""
Tests for L{realtime.config.options}: defaults, the TOML file, and refusals that
name the option.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from realtime.auth.firstpacket import FirstPacketAuthenticator
from realtime.config.options import Options, loadApiKey
from realtime.routing.chat import ChatStrategy
from tests.serverprocess import environment, twistdCommand
from tests.support import buildPlugins


class OptionsTests(SynchronousTestCase):
    """
    C{twistd realtime} options.
    """

    def setUp(self) -> None:
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        cwd = os.getcwd()
        os.chdir(self.home)
        self.addCleanup(os.chdir, cwd)

    def options(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def refused(self, *argv: str) -> str:
        return str(self.assertRaises(usage.UsageError, self.built, *argv))

    def built(self, *argv: str) -> tuple[Any, Any]:
        """
        The plugins the options name, built as C{buildCore} builds them: a
        plugin's own options are checked there, with the reactor.
        """
        return buildPlugins(self.options(*argv), Clock())

    def config(self, text: str) -> str:
        path = os.path.join(self.home, "realtime.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_defaults(self) -> None:
        """
        No options: WebSocket on 8080, API and push port on 127.0.0.1 only,
        uid-first-packet auth and uid routing.
        """
        o = self.options()
        self.assertEqual(o["port"], "tcp:8080")
        self.assertEqual(o["api-port"], "tcp:8081:interface=127.0.0.1")
        self.assertEqual(o["push-port"], "tcp:5678:interface=127.0.0.1")
        self.assertEqual((o["auth-name"], o["routing-name"]), ("uid-first-packet", "uid"))
        self.assertIsInstance(buildPlugins(o, Clock())[0], FirstPacketAuthenticator)
        self.assertEqual(o["max-message-size"], 1048576)
        self.assertEqual(o["max-message-frames"], 1024)
        self.assertEqual(o["ping-interval"], 30.0)

    def test_pluginOptions(self) -> None:
        """
        Plugin options come as C{NAME:K=V} or repeated C{--auth-option}.
        """
        o = self.options("--auth", "uid-first-packet:verify=hmac", "--auth-option", "secret=k", "--routing", "chat")
        self.assertEqual(o["auth-options"], {"verify": "hmac", "secret": "k"})
        authenticator, strategy = buildPlugins(o, Clock())
        self.assertEqual(authenticator.secret, b"k")  # type: ignore[attr-defined]
        self.assertIsInstance(strategy, ChatStrategy)

    def test_refusals(self) -> None:
        """
        Each bad value is refused with a message naming its option.
        """
        cases = [
            (("--port", "nonsense:1"), "--port 'nonsense:1' is not a valid endpoint"),
            (("--api-port", "tcp:notaport"), "--api-port 'tcp:notaport' is not a valid endpoint"),
            (("--max-message-size", "-1"), "--max-message-size must be >= 1"),
            (("--max-message-size", "big"), "--max-message-size must be a whole number"),
            (("--max-message-frames", "0"), "--max-message-frames must be >= 1"),
            (("--ping-interval", "soon"), "--ping-interval must be a number"),
            (("--auth", "nope"), "unknown auth 'nope' (--auth); available: "),
            (("--routing", "nope"), "unknown routing 'nope' (--routing); available: "),
            (("--auth-option", "novalue"), "--auth-option wants KEY=VALUE, not 'novalue'"),
            (("--auth", "uid-first-packet", "--auth-option", "timeout=x"), "--auth uid-first-packet: option 'timeout'"),
            (("--api-key", " "), "--api-key must not be empty"),
            (("--plugin-dir", "/no/such"), "--plugin-dir '/no/such' is not a directory"),
        ]
        for argv, message in cases:
            self.assertIn(message, self.refused(*argv), argv)

    def test_barePort(self) -> None:
        """
        A bare port number means TCP on that port, on the interface the
        option listens on by default: every interface for C{--port},
        loopback for the internal ports.
        """
        o = self.options("--port", "9080", "--api-port", "9081", "--push-port", "9678")
        self.assertEqual(
            (o["port"], o["api-port"], o["push-port"]),
            ("tcp:9080", "tcp:9081:interface=127.0.0.1", "tcp:9678:interface=127.0.0.1"),
        )
        o = self.options("--config", self.config('port = 7080\napi-port = "7081"\n'))
        self.assertEqual((o["port"], o["api-port"]), ("tcp:7080", "tcp:7081:interface=127.0.0.1"))

    def test_didYouMean(self) -> None:
        """
        An endpoint that lacks its type and looks like C{HOST:PORT} or
        C{:PORT} is refused with the endpoint string it probably meant.
        """
        self.assertIn("did you mean 'tcp:8080:interface=127.0.0.1'?", self.refused("--port", "127.0.0.1:8080"))
        self.assertIn("did you mean 'tcp:8080'?", self.refused("--port", ":8080"))
        self.assertIn("not a valid endpoint", self.refused("--port", "99999"))

    def test_unknownListsAvailable(self) -> None:
        """
        An unknown auth name lists the available ones.
        """
        message = self.refused("--auth", "nope")
        for name in ("anonymous", "token", "uid-first-packet", "wechat"):
            self.assertIn(name, message)

    def test_disablePorts(self) -> None:
        """
        The internal ports can be turned off with C{none}; the WebSocket port cannot.
        """
        o = self.options("--api-port", "none", "--push-port", "none")
        self.assertEqual((o["api-port"], o["push-port"]), ("none", "none"))
        self.assertIn("--port 'none'", self.refused("--port", "none"))

    def test_maxUidsPerPush(self) -> None:
        """
        C{--max-uids-per-push} defaults to 10000 and wants a whole number of
        at least 1.
        """
        self.assertEqual(self.options()["max-uids-per-push"], 10000)
        self.assertEqual(self.options("--max-uids-per-push", "50")["max-uids-per-push"], 50)
        self.assertIn("--max-uids-per-push must be >= 1", self.refused("--max-uids-per-push", "0"))

    def test_operations(self) -> None:
        """
        C{--log-format} is text (default) or json; C{--api-cors-origin}
        defaults to any origin, repeats, and takes C{none}.
        """
        o = self.options()
        self.assertEqual((o["log-format"], o["api-cors-origin"]), ("text", ["*"]))
        o = self.options("--log-format", "json", "--api-cors-origin", "https://a", "--api-cors-origin", "https://b")
        self.assertEqual((o["log-format"], o["api-cors-origin"]), ("json", ["https://a", "https://b"]))
        self.assertEqual(self.options("--api-cors-origin", "none")["api-cors-origin"], ["none"])
        self.assertIn("--log-format must be one of text, json, not 'xml'", self.refused("--log-format", "xml"))

    def test_config(self) -> None:
        """
        A TOML file supplies options; the command line wins over it.
        """
        path = self.config(
            'port = "tcp:9000"\nrouting = "chat"\nmax-message-size = 2048\nping_interval = 5\n'
            'allowed-origin = ["https://a.example"]\n[auth-option]\ntimeout = "3"\n'
        )
        o = self.options("--config", path, "--port", "tcp:9001")
        self.assertEqual(o["port"], "tcp:9001")
        self.assertEqual(o["routing-name"], "chat")
        self.assertEqual(o["max-message-size"], 2048)
        self.assertEqual(o["ping-interval"], 5.0)
        self.assertEqual(o["allowed-origin"], ["https://a.example"])
        self.assertEqual(buildPlugins(o, Clock())[0].timeout, 3.0)  # type: ignore[attr-defined]

    def test_configRefusals(self) -> None:
        """
        Unknown keys, bad TOML and a missing file are refused naming the file.
        """
        self.assertIn("unknown option 'colour'", self.refused("--config", self.config('colour = "red"\n')))
        self.assertIn("realtime.toml", self.refused("--config", self.config("port = \n")))
        self.assertIn("--config '/no/such.toml'", self.refused("--config", "/no/such.toml"))
        self.assertIn("must be >= 1", self.refused("--config", self.config("max-message-size = 0\n")))

    def test_listPlugins(self) -> None:
        """
        C{--list-plugins} prints every plugin with its options and exits 0.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, self.options, "--list-plugins")
        self.assertEqual(e.code, 0)
        text = out.getvalue()
        for name in ("uid-first-packet", "wechat", "token", "anonymous", "uid", "chat", "echo"):
            self.assertIn(f"  {name} ", text)
        self.assertIn("secret=...", text)

    def test_defaultPluginDir(self) -> None:
        """
        C{./plugins} is searched when it exists.
        """
        self.assertEqual(self.options()["plugin-dir"], [])
        os.makedirs("plugins")
        self.assertEqual(self.options()["plugin-dir"], ["plugins"])


class CommandLineErrorTests(SynchronousTestCase):
    """
    A bad option through a real C{twistd realtime}: the error comes first,
    with a pointer to C{--help}, not after the whole usage text.
    """

    def twistd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        home = self.mktemp()
        os.makedirs(home)
        return subprocess.run(
            [*twistdCommand(), "-n", "--pidfile=", "realtime", *argv],
            env=environment(),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_errorFirst(self) -> None:
        """
        One bad value: a short answer, the error on its first line.
        """
        result = self.twistd("--port", "nonsense:1")
        self.assertEqual(result.returncode, 1)
        lines = (result.stderr + result.stdout).splitlines()
        self.assertIn("--port 'nonsense:1' is not a valid endpoint", lines[0])
        self.assertIn("twistd realtime --help", "\n".join(lines))
        self.assertLess(len(lines), 5, lines)

    def test_unknownOption(self) -> None:
        """
        An option that does not exist is reported the same way.
        """
        result = self.twistd("--prot", "8080")
        self.assertEqual(result.returncode, 1)
        lines = (result.stderr + result.stdout).splitlines()
        self.assertIn("prot", lines[0])
        self.assertLess(len(lines), 5, lines)

    def test_helpIsWhole(self) -> None:
        """
        C{--help} still prints every option.
        """
        result = self.twistd("--help")
        self.assertEqual(result.returncode, 0)
        for option in ("--port", "--api-port", "--offline-ttl", "--list-plugins"):
            self.assertIn(option, result.stdout)


class ApiKeyTests(SynchronousTestCase):
    """
    The API key file is created once with a random key, private to its owner.
    """

    def test_createdThenRead(self) -> None:
        """
        A missing file is created (mode 0600) with a random key; later starts
        read the same key.
        """
        path = self.mktemp()
        key, created = loadApiKey(path)
        self.assertTrue(created)
        self.assertGreaterEqual(len(key), 30)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(loadApiKey(path), (key, False))
        self.assertNotEqual(loadApiKey(self.mktemp())[0], key)

    def test_empty(self) -> None:
        """
        An empty key file is refused, not used as an empty key.
        """
        path = self.mktemp()
        open(path, "w").close()
        self.assertIn("is empty", str(self.assertRaises(usage.UsageError, loadApiKey, path)))


class ContextRoutingOptionsTests(SynchronousTestCase):
    """
    A routing plugin built with the server's services (C{IRoutingContextUser})
    is found and its option names checked at startup, and built by the
    wiring once those services exist.
    """

    def options(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(["--store", "memory", *argv])
        return options

    def test_channelsLeftForTheWiring(self) -> None:
        """
        C{--routing channels} leaves the strategy to the wiring (as every
        plugin), which builds it over its own channel service.
        """
        from twisted.internet.testing import MemoryReactorClock

        from realtime.routing.channels import ChannelsStrategy, ChannelsStrategyFactory
        from realtime.wiring import buildCore

        o = self.options("--routing", "channels", "--api-key", "k")
        self.assertNotIn("strategy", o)
        self.assertIsInstance(o["routing-factory"], ChannelsStrategyFactory)
        core = buildCore(o, MemoryReactorClock())
        strategy = core.factory.strategy.strategy  # type: ignore[attr-defined]
        self.assertIsInstance(strategy, ChannelsStrategy)
        self.assertIs(strategy.channels, core.router.channels)

    def test_unknownOptionRefused(self) -> None:
        """
        An option name the plugin does not take is refused at startup all
        the same.
        """
        e = self.assertRaises(usage.UsageError, self.options, "--routing", "channels:fast=yes")
        self.assertIn("--routing channels: unknown option 'fast'", str(e))
