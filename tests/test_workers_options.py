"""
C{--workers}: read and checked with the other options, and what a worker is
started with.
"""

from __future__ import annotations

import os
import sys

from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from realtime.config.backends import checkWorkers
from realtime.config.options import Options
from realtime.tap import buildSupervisor
from realtime.workers.handoff import ENVIRONMENT, Handoff
from realtime.workers.supervisor import Backoff, twistdArguments, withoutWorkers, workerCommand, workerEnvironment

REDIS = "redis://127.0.0.1:1/0"


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--api-key", "k", *args])
    return options


class InFreshDirectory(SynchronousTestCase):
    """
    Each test in a directory of its own: no ./plugins is found there, and no
    store or key file one test makes is seen by the next.
    """

    def setUp(self) -> None:
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        cwd = os.getcwd()
        os.chdir(home)
        self.addCleanup(os.chdir, cwd)


class WorkersOptionTests(InFreshDirectory):

    def test_defaultIsOne(self) -> None:
        """
        Without the option one process serves, as before.
        """
        options = parse("--store", "memory")
        self.assertEqual(options["workers"], 1)
        self.assertIsNone(options["worker"])

    def test_oneNeedsNoRedis(self) -> None:
        """
        C{--workers 1} is the single process, on any broker.
        """
        self.assertEqual(parse("--workers", "1")["workers"], 1)

    def test_moreNeedRedisBroker(self) -> None:
        """
        Above 1 without a Redis broker: refused, saying why and the fix.
        """
        with self.assertRaises(usage.UsageError) as caught:
            parse("--workers", "2", "--store", "memory")
        message = str(caught.exception)
        self.assertIn("--workers 2 needs a broker every worker shares", message)
        self.assertIn("invisible to the pushes another worker takes", message)
        self.assertIn("--broker redis://HOST:PORT/DB", message)

    def test_sqliteStoreRefused(self) -> None:
        """
        Workers cannot share one process's SQLite file (the default store):
        refused, naming the stores they can share.
        """
        with self.assertRaises(usage.UsageError) as caught:
            parse("--workers", "2", "--broker", REDIS)
        self.assertIn("cannot share --store sqlite:realtime.sqlite3", str(caught.exception))
        self.assertIn("--store redis://HOST:PORT/DB", str(caught.exception))

    def test_unixSocketsRefused(self) -> None:
        """
        Unix sockets cannot be shared by workers: each worker's adopted
        port would set the file's mode to Twisted's default (0666) when it
        starts and remove the file the others still serve when it stops.
        Refused naming the option, for C{unix:} and systemd's Unix sockets.
        """
        with self.assertRaises(usage.UsageError) as caught:
            parse("--workers", "2", "--broker", REDIS, "--store", "memory", "--api-port", "unix:/tmp/api.sock:mode=600")
        self.assertIn("--workers 2 cannot share --api-port unix:/tmp/api.sock:mode=600", str(caught.exception))
        self.assertIn("tcp:", str(caught.exception))
        endpoints = {"port": "systemd:domain=UNIX:index=0", "api-port": "none"}
        with self.assertRaises(usage.UsageError) as caught:
            checkWorkers(2, REDIS, "memory", endpoints)
        self.assertIn("--workers 2 cannot share --port systemd:domain=UNIX:index=0", str(caught.exception))
        checkWorkers(2, REDIS, "memory", {"port": "systemd:domain=INET:index=0", "api-port": "tcp:1"})

    def test_notANumber(self) -> None:
        """
        Zero, negative and fractional counts are refused naming the option.
        """
        for bad in ("0", "-1", "1.5", "many"):
            with self.assertRaises(usage.UsageError) as caught:
                parse("--workers", bad, "--broker", REDIS, "--store", REDIS)
            self.assertIn("--workers", str(caught.exception))

    def test_argumentsRecorded(self) -> None:
        """
        The arguments as given are kept: the workers are started with them.
        """
        options = parse("--store", "memory", "--workers=1")
        self.assertEqual(options.arguments, ["--api-key", "k", "--store", "memory", "--workers=1"])


class WorkerCommandTests(SynchronousTestCase):
    def test_withoutWorkers(self) -> None:
        """
        Both spellings of C{--workers} are left out, and nothing else.
        """
        self.assertEqual(
            withoutWorkers(["--workers", "2", "--port", "8080", "--workers=3", "--broker", REDIS]),
            ["--port", "8080", "--broker", REDIS],
        )

    def test_command(self) -> None:
        """
        This interpreter, twistd in the foreground without a pid file, and
        realtime's options minus C{--workers}.
        """
        command = workerCommand(["--workers", "2", "--broker", REDIS], None)
        self.assertEqual(
            command,
            [sys.executable, "-P", "-m", "realtime.workers", "--nodaemon", "--pidfile=", "realtime", "--broker", REDIS],
        )

    def test_twistdOptionsRepeated(self) -> None:
        """
        The reactor, the log destination and the umask are the parent's; the
        user and group are not repeated (the parent has already switched).
        """
        config = {"reactor": "asyncio", "logfile": "x.log", "syslog": False, "umask": 0o22, "uid": 1000, "gid": 1000}
        self.assertEqual(
            twistdArguments(config),
            ["--reactor", "asyncio", "--logfile", "x.log", "--umask", "0o22", "--nodaemon", "--pidfile="],
        )

    def test_daemonLogFile(self) -> None:
        """
        A daemon's workers log where the daemon does by default
        (C{twistd.log}), not to the daemon's closed output; in the
        foreground, or to syslog, they log as the parent does.
        """
        self.assertEqual(twistdArguments({"nodaemon": False})[:2], ["--logfile", "twistd.log"])
        self.assertEqual(twistdArguments({"nodaemon": True}), ["--nodaemon", "--pidfile="])
        self.assertEqual(
            twistdArguments({"nodaemon": False, "syslog": True, "prefix": "rt"}),
            ["--syslog", "--prefix", "rt", "--nodaemon", "--pidfile="],
        )

    def test_environment(self) -> None:
        """
        The handoff is in the environment, systemd's socket variables are
        not (they describe the parent's descriptors), and realtime's source
        is first on the path when it is not installed (a source tree, as here).
        """
        handoff = Handoff(1, 2, 0, {"port": (3, "inet")})
        env = workerEnvironment({"LISTEN_FDS": "1", "LISTEN_PID": "7", "HOME": "/h", "PYTHONPATH": "x"}, handoff)
        self.assertEqual(Handoff.decode(env[ENVIRONMENT]), handoff)
        self.assertNotIn("LISTEN_FDS", env)
        self.assertNotIn("LISTEN_PID", env)
        self.assertEqual(env["HOME"], "/h")
        self.assertTrue(env["PYTHONPATH"].endswith(":x"))


class HandoffTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        What the parent encodes, the worker decodes.
        """
        handoff = Handoff(2, 4, 0, {"port": (3, "inet"), "api-port": (4, "inet6"), "push-port": (5, "unix")})
        self.assertEqual(Handoff.decode(handoff.encode()), handoff)
        self.assertEqual(Handoff.fromEnvironment({ENVIRONMENT: handoff.encode()}), handoff)
        self.assertIsNone(Handoff.fromEnvironment({}))

    def test_garbageRefused(self) -> None:
        """
        A value no parent writes is refused, naming the variable.
        """
        for bad in ("", "{}", "[1]", '{"index": 1, "count": 1, "parent": 0, "sockets": {"port": [3, "ipx"]}}'):
            with self.assertRaises(ValueError) as caught:
                Handoff.decode(bad)
            self.assertIn(ENVIRONMENT, str(caught.exception))


class BackoffTests(SynchronousTestCase):
    def test_doubles(self) -> None:
        """
        Each quick death doubles the wait, up to the longest.
        """
        backoff = Backoff(first=0.5, longest=30.0)
        self.assertEqual([backoff.delay(n) for n in range(8)], [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0])
        self.assertEqual(backoff.delay(10_000), 30.0)


class WorkerModeTests(InFreshDirectory):
    """
    What a worker's options do with the handoff its parent set.
    """

    def inWorker(self, handoff: str) -> None:
        os.environ[ENVIRONMENT] = handoff
        self.addCleanup(os.environ.pop, ENVIRONMENT, None)

    def test_handoffRead(self) -> None:
        """
        A worker's handed-over ports are taken as its parent checked them
        (a C{systemd:} one could not be looked up again here), and a
        C{workers} count from a config file does not make it a parent.
        """
        handoff = Handoff(1, 2, 0, {"port": (3, "inet")})
        self.inWorker(handoff.encode())
        with open("realtime.toml", "w") as f:
            f.write("workers = 2\n")
        options = parse("--config", "realtime.toml", "--store", "memory", "--port", "systemd:domain=INET:index=0")
        self.assertEqual((options["worker"], options["workers"]), (handoff, 1))
        self.assertEqual(options["port"], "systemd:domain=INET:index=0")

    def test_badHandoffRefused(self) -> None:
        """
        A handoff no parent wrote stops the start, naming the variable.
        """
        self.inWorker("nonsense")
        with self.assertRaises(usage.UsageError) as caught:
            parse("--store", "memory")
        self.assertIn(ENVIRONMENT, str(caught.exception))


class ParentTests(SynchronousTestCase):
    def test_apiKeyCreatedOnce(self) -> None:
        """
        The parent creates the API key file before any worker starts: each
        worker creating it would race and disagree on the key.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        options = Options()
        options.parseOptions(["--store", "memory", "--api-key-file", os.path.join(home, "key")])
        options["workers"] = 2  # a Redis broker would need the asyncio reactor: not this test's point
        service = buildSupervisor(options, MemoryReactor())
        self.assertTrue(os.path.exists(os.path.join(home, "key")))
        (supervisor,) = list(service)
        self.assertEqual([child.option for child in supervisor], ["port", "api-port", "push-port"])
