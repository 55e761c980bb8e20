"""
Tests for L{realtime.client.blocking} and L{realtime.client.cli}: the blocking clients
and the ``realtime-push`` command, run in a thread against the real API site and line port listening
on loopback, while the reactor keeps serving.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import realtime
import realtime.client
from realtime.api.http import buildApiSite
from realtime.api.lineproto import LinePushFactory
from realtime.auth.firstpacket import checkSignedPacket, signFirstPacket
from realtime.broker.memory import MemoryBroker
from realtime.client import blocking as client
from realtime.client.blocking import HttpPushClient, LinePushClient, PushError, findApiKey
from realtime.client.cli import main, parseData
from realtime.core.namespaces import NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.store.memory import MemoryMessageStore
from realtime.values import OfflineLimits
from realtime.wiring import buildRouter
from tests.fakes import FakeSession

KEY = "client-test-key"


def temporaryDirectory(case: SynchronousTestCase) -> str:
    """
    A directory removed after the test; unlike C{mktemp}, which under pytest
    litters the current directory.
    """
    holder = tempfile.TemporaryDirectory()
    case.addCleanup(holder.cleanup)
    return holder.name


class TrackedProtocol(ProtocolWrapper):
    """
    A server-side connection whose end the test can wait for.

    @ivar lost: fires when the connection is gone.
    """

    def __init__(self, factory: WrappingFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Tracker(WrappingFactory):
    """
    Wraps a server factory to keep every connection it served, so a test can
    close them and wait until they are gone (a clean reactor for trial).

    @ivar served: each connection, in the order they came.
    """

    protocol = TrackedProtocol

    def __init__(self, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self.served: list[TrackedProtocol] = []

    def buildProtocol(self, addr: Any) -> TrackedProtocol:
        p = super().buildProtocol(addr)
        self.served.append(p)
        return p

    def closeAll(self) -> Deferred[Any]:
        """
        Close every connection still open, and wait until all are gone.
        """
        for p in self.served:
            if not p.lost.called:
                p.transport.loseConnection()
        return gatherResults([p.lost for p in self.served])


class ServerTestCase(TestCase):
    """
    A real API site and line port on loopback ports, over a L{MemoryBroker}
    whose sessions are L{FakeSession}s.

    @ivar backups: what C{/api/backup} copies (none: 409).
    """

    backups: Any = None

    @inlineCallbacks
    def setUp(self) -> Any:
        from twisted.internet import reactor

        self.registry = SessionRegistry()
        broker = self.buildBroker(reactor)
        self.site = buildApiSite(broker, KEY, 65536, reactor, backups=self.backups)
        self.lineFactory = LinePushFactory(broker, 65536)
        self.apiConnections = Tracker(self.site)
        self.lineConnections = Tracker(self.lineFactory)
        endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        self.apiPort = yield endpoint.listen(self.apiConnections)
        self.linePortObject = yield endpoint.listen(self.lineConnections)
        self.url = f"http://127.0.0.1:{self.apiPort.getHost().port}"
        self.linePort = self.linePortObject.getHost().port
        self.http = HttpPushClient(self.url, apiKey=KEY)
        self.line = LinePushClient("127.0.0.1", self.linePort, timeout=10)
        self.clients: list[Any] = [self.http, self.line]
        self.addCleanup(self.shutDown)

    def buildBroker(self, reactor: Any) -> Any:
        """
        What the API and the line port push through: a broker over
        C{self.registry}, with no offline queues.
        """
        return MemoryBroker(self.registry, Fanout(reactor))

    @inlineCallbacks
    def shutDown(self) -> Any:
        """
        Close the clients, then every server-side connection, then the ports.
        """
        for c in self.clients:
            c.close()
        yield self.apiConnections.closeAll()
        yield self.lineConnections.closeAll()
        yield self.apiPort.stopListening()
        yield self.linePortObject.stopListening()

    def session(self, uid: str) -> FakeSession:
        """
        A connected session of C{uid}.
        """
        s = FakeSession(uid)
        self.registry.add(s)
        return s

    def inThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Run the blocking C{f} off the reactor thread.
        """
        return deferToThread(f, *args, **kwargs)

    def runMain(self, argv: list[str]) -> Deferred[tuple[int, str, str]]:
        """
        Run L{main} with C{argv} in a thread.

        @return: a Deferred of the exit status, stdout and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        d = deferToThread(main, argv, out, err)
        return d.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))


class HttpPushClientTests(ServerTestCase):
    """
    L{HttpPushClient} against the real API.
    """

    @inlineCallbacks
    def test_push(self) -> Any:
        """
        C{push} returns the decoded answer; the session got the data.
        """
        s = self.session("u1")
        answer = yield self.inThread(self.http.push, "u1", {"percent": "88%"})
        self.assertEqual(answer, {"status": "delivered", "delivered": 1, "uids": {"u1": 1}})
        self.assertEqual(s.texts, ['{"percent":"88%"}'])
        answer = yield self.inThread(self.http.push, ("u1", "u2"), "text")
        self.assertEqual(answer, {"status": "delivered", "delivered": 1, "uids": {"u1": 1, "u2": 0}})
        self.assertEqual(s.texts[-1], "text")
        self.assertEqual(len(self.apiConnections.served), 1, "the second request reused the connection")

    @inlineCallbacks
    def test_offlineBroadcastOnlineStats(self) -> Any:
        """
        An offline push, a broadcast, presence and stats.
        """
        answer = yield self.inThread(self.http.push, "nobody", 1)
        self.assertEqual(answer["status"], "offline")
        a, b = self.session("a"), self.session("b b")
        answer = yield self.inThread(self.http.broadcast, ["x"])
        self.assertEqual(answer, {"status": "delivered", "delivered": 2})
        self.assertEqual((a.texts, b.texts), (['["x"]'], ['["x"]']))
        answer = yield self.inThread(self.http.online, "a", "b b", "c&d")
        self.assertEqual(answer, {"online": {"a": 1, "b b": 1, "c&d": 0}})
        stats = yield self.inThread(self.http.stats)
        self.assertEqual((stats["connections"], stats["uids"]), (2, 2))
        self.assertIn("uptime", stats)

    @inlineCallbacks
    def test_errors(self) -> Any:
        """
        HTTP errors raise L{PushError} with the API's status, code and message.
        """
        wrong = HttpPushClient(self.url, apiKey="nope")
        self.clients.append(wrong)
        e = yield self.assertFailure(self.inThread(wrong.stats), PushError)
        self.assertEqual((e.status, e.code, e.message), (401, "unauthorized", "wrong API key"))
        e = yield self.assertFailure(self.inThread(self.http.push, [], 1), PushError)
        self.assertEqual((e.status, e.code), (400, "invalid_request"))
        e = yield self.assertFailure(self.inThread(self.http.push, "u1", float("nan")), PushError)
        self.assertEqual((e.status, e.code), (400, "bad_json"))

    @inlineCallbacks
    def test_serverClosedIdleConnection(self) -> Any:
        """
        A connection the server closed while idle is replaced, and the push
        goes through once.
        """
        s = self.session("u1")
        yield self.inThread(self.http.push, "u1", 1)
        [served] = self.apiConnections.served
        served.transport.loseConnection()
        yield served.lost
        answer = yield self.inThread(self.http.push, "u1", 2)
        self.assertEqual(answer["delivered"], 1)
        self.assertEqual(s.texts, ["1", "2"])
        self.assertEqual(len(self.apiConnections.served), 2)

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        Nothing listening raises L{PushError} C{connection_failed}.
        """
        from twisted.internet import reactor

        closed = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(self.lineFactory)
        port = closed.getHost().port
        yield closed.stopListening()
        dead = HttpPushClient(f"http://127.0.0.1:{port}/", apiKey=KEY, timeout=5)
        self.clients.append(dead)
        e = yield self.assertFailure(self.inThread(dead.stats), PushError)
        self.assertEqual((e.status, e.code), (0, "connection_failed"))
        deadLine = LinePushClient("127.0.0.1", port, timeout=5)
        e = yield self.assertFailure(self.inThread(deadLine.push, "a", {}), PushError)
        self.assertEqual((e.status, e.code), (0, "connection_failed"))

    def test_badUrl(self) -> None:
        """
        Only http and https URLs are accepted.
        """
        self.assertRaises(ValueError, HttpPushClient, "ftp://example.com", apiKey=KEY)
        self.assertRaises(ValueError, HttpPushClient, "127.0.0.1:8081", apiKey=KEY)


class LinePushClientTests(ServerTestCase):
    """
    L{LinePushClient} against the real line port.
    """

    @inlineCallbacks
    def test_pushOkFail(self) -> Any:
        """
        C{push} answers C{"ok"} (true) or C{"fail"} (false), over one connection;
        the session receives the request line.
        """
        s = self.session("uid1")
        ok = yield self.inThread(self.line.push, "uid1", {"percent": "88%"})
        self.assertEqual((ok, bool(ok)), ("ok", True))
        self.assertEqual(s.texts, ['{"uid":"uid1","percent":"88%"}'])
        ok = yield self.inThread(self.line.push, "uid2", {})
        self.assertEqual((ok, bool(ok)), ("fail", False))
        ok = yield self.inThread(self.line.push, ["uid2", "uid1"], {"n": 1})
        self.assertEqual((ok, bool(ok)), ("ok", True))
        self.assertEqual(len(self.lineConnections.served), 1)
        self.assertEqual(self.lineFactory.pushes, 3)

    @inlineCallbacks
    def test_broadcast(self) -> Any:
        """
        C{broadcast} reaches everyone.
        """
        ok = yield self.inThread(self.line.broadcast, {"news": 1})
        self.assertEqual((ok, bool(ok)), ("fail", False))
        a = self.session("a")
        ok = yield self.inThread(self.line.broadcast, {"news": 2})
        self.assertEqual((ok, bool(ok)), ("ok", True))
        self.assertEqual(a.texts, ['{"broadcast":true,"news":2}'])

    @inlineCallbacks
    def test_errorLine(self) -> Any:
        """
        An C{error:} answer raises L{PushError}; the connection stays usable.
        """
        self.session("a")
        e = yield self.assertFailure(self.inThread(self.line.push, "", {}), PushError)
        self.assertEqual(
            (e.status, e.code, e.message), (0, "line_error", '"uid" must be a non-empty string or a list of them')
        )
        ok = yield self.inThread(self.line.push, "a", {})
        self.assertEqual((ok, bool(ok)), ("ok", True))
        self.assertEqual(len(self.lineConnections.served), 1)

    def test_reservedFields(self) -> None:
        """
        C{fields} may not carry the addressing keys.
        """
        self.assertRaises(ValueError, self.line.push, "a", {"uid": "b"})
        self.assertRaises(ValueError, self.line.broadcast, {"broadcast": False})

    @inlineCallbacks
    def test_reconnect(self) -> Any:
        """
        After the server closed the connection, the next push reconnects.
        """
        s = self.session("a")
        yield self.inThread(self.line.push, "a", {"n": 1})
        [served] = self.lineConnections.served
        served.transport.loseConnection()
        yield served.lost
        ok = yield self.inThread(self.line.push, "a", {"n": 2})
        self.assertEqual((ok, bool(ok)), ("ok", True))
        self.assertEqual(s.texts, ['{"uid":"a","n":1}', '{"uid":"a","n":2}'])
        self.assertEqual(len(self.lineConnections.served), 2)

    @inlineCallbacks
    def test_contextManager(self) -> Any:
        """
        Leaving the C{with} block closes the connection.
        """

        def pushAndClose() -> str:
            with LinePushClient("127.0.0.1", self.linePort) as line:
                return line.push("a", {})

        ok = yield self.inThread(pushAndClose)
        self.assertEqual((ok, bool(ok)), ("fail", False))
        yield self.lineConnections.served[0].lost
        self.assertEqual(self.lineFactory.connections, 0)


class QueuedTests(ServerTestCase):
    """
    Both clients and the command against a server with offline queues, where
    a uid seen before and now without a connection is answered C{queued}.
    """

    def buildBroker(self, reactor: Any) -> Any:
        """
        A router with offline queues over a memory store that saw C{"gone"}.
        """
        store = MemoryMessageStore()
        store.markSeen({"gone": reactor.seconds()})
        fanout = Fanout(reactor)
        broker = MemoryBroker(self.registry, fanout)
        return buildRouter(reactor, self.registry, broker, fanout, store, NamespaceRules(), OfflineLimits(100, 86400.0))

    @inlineCallbacks
    def test_lineAnswers(self) -> Any:
        """
        C{LinePushClient.push} answers the line port's word: C{"ok"},
        C{"queued"} or C{"fail"}, true only for C{"ok"}.
        """
        self.session("here")
        answers = []
        for uid in ("here", "gone", "never"):
            answer = yield self.inThread(self.line.push, uid, {"n": 1})
            answers.append((answer, bool(answer), answer.delivered, answer.queued))
        self.assertEqual(
            answers,
            [("ok", True, True, False), ("queued", False, False, True), ("fail", False, False, False)],
        )

    @inlineCallbacks
    def test_httpAnswers(self) -> Any:
        """
        C{HttpPushClient.push} answers the API's status.
        """
        self.session("here")
        statuses = []
        for uid in ("here", "gone", "never"):
            answer = yield self.inThread(self.http.push, uid, {"n": 1})
            statuses.append(answer["status"])
        self.assertEqual(statuses, ["delivered", "queued", "offline"])

    @inlineCallbacks
    def test_commandExitStatus(self) -> Any:
        """
        The command prints the answer and exits 0 delivered, 3 queued, 1
        neither, through either port.
        """
        self.session("here")
        line = ["--via", "line", "--line", f"127.0.0.1:{self.linePort}"]
        http = ["--url", self.url, "--api-key", KEY]
        results = []
        for via in (line, http):
            for uid in ("here", "gone", "never"):
                status, out, err = yield self.runMain([*via, "push", uid, '{"n": 1}'])
                word = out.strip() if via is line else json.loads(out)["status"]
                results.append((status, word, err))
        self.assertEqual(
            results,
            [
                (0, "ok", ""),
                (3, "queued", ""),
                (1, "fail", ""),
                (0, "delivered", ""),
                (3, "queued", ""),
                (1, "offline", ""),
            ],
        )


class MainTests(ServerTestCase):
    """
    The ``realtime-push`` command's output and exit statuses.
    """

    def viaHttp(self, *argv: str) -> Deferred[tuple[int, str, str]]:
        """
        Run the command against the test API.
        """
        return self.runMain(["--url", self.url, "--api-key", KEY, *argv])

    @inlineCallbacks
    def test_push(self) -> Any:
        """
        0 when delivered, 1 when offline; the answer is printed as JSON; DATA
        is JSON when it parses, else text.
        """
        s = self.session("u1")
        status, out, err = yield self.viaHttp("push", "u1", '{"percent": "88%"}')
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(json.loads(out), {"status": "delivered", "delivered": 1, "uids": {"u1": 1}})
        status, out, err = yield self.viaHttp("push", "u1", "u2", "not json")
        self.assertEqual(status, 0)
        self.assertEqual(s.texts, ['{"percent":"88%"}', "not json"])
        status, out, err = yield self.viaHttp("push", "ghost", "1")
        self.assertEqual((status, json.loads(out)["status"]), (1, "offline"))

    @inlineCallbacks
    def test_broadcast(self) -> Any:
        """
        A broadcast exits 1 with nobody connected, 0 otherwise.
        """
        status, _, _ = yield self.viaHttp("broadcast", "hello")
        self.assertEqual(status, 1)
        a = self.session("a")
        status, _, _ = yield self.viaHttp("broadcast", "hello")
        self.assertEqual(status, 0)
        self.assertEqual(a.texts, ["hello"])

    @inlineCallbacks
    def test_viaLine(self) -> Any:
        """
        Through the line port: a JSON object DATA gives the line's fields,
        anything else goes in C{"data"}; ok exits 0, fail 1, an error 2.
        """
        s = self.session("u1")
        line = ["--via", "line", "--line", f"127.0.0.1:{self.linePort}"]
        status, out, _ = yield self.runMain([*line, "push", "u1", '{"percent": "88%"}'])
        self.assertEqual((status, out), (0, "ok\n"))
        status, out, _ = yield self.runMain([*line, "push", "u1", "plain"])
        self.assertEqual(status, 0)
        self.assertEqual(s.texts, ['{"uid":"u1","percent":"88%"}', '{"uid":"u1","data":"plain"}'])
        status, out, _ = yield self.runMain([*line, "push", "ghost", "1"])
        self.assertEqual((status, out), (1, "fail\n"))
        status, out, _ = yield self.runMain([*line, "broadcast", '{"news": 1}'])
        self.assertEqual((status, out), (0, "ok\n"))
        status, out, err = yield self.runMain([*line, "push", "", "1"])
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, 'realtime-push: error: line_error: "uid" must be a non-empty string or a list of them\n')

    @inlineCallbacks
    def test_lineFromEnvironment(self) -> Any:
        """
        Without C{--line}, the line port is C{$REALTIME_LINE}, as for
        C{examples/python/push.py}.
        """
        self.session("u1")
        os.environ["REALTIME_LINE"] = f"127.0.0.1:{self.linePort}"
        self.addCleanup(os.environ.pop, "REALTIME_LINE", None)
        status, out, err = yield self.runMain(["--via", "line", "push", "u1", "{}"])
        self.assertEqual((status, out, err), (0, "ok\n", ""))

    @inlineCallbacks
    def test_onlineAndStats(self) -> Any:
        """
        C{online} prints a table and exits 0 if anyone is online; C{stats}
        prints a two-column table.
        """
        status, out, _ = yield self.viaHttp("online", "u1", "u2")
        self.assertEqual((status, out), (1, "u1  0\nu2  0\n"))
        self.session("u2")
        status, out, _ = yield self.viaHttp("online", "u1", "u2")
        self.assertEqual((status, out), (0, "u1  0\nu2  1\n"))
        status, out, _ = yield self.viaHttp("stats")
        self.assertEqual(status, 0)
        rows = dict(line.split(None, 1) for line in out.splitlines())
        self.assertEqual((rows["connections"], rows["uids"]), ("1", "1"))
        self.assertIn("uptime", rows)

    @inlineCallbacks
    def test_errors(self) -> Any:
        """
        A refused request exits 2 with one line on stderr.
        """
        status, out, err = yield self.runMain(["--url", self.url, "--api-key", "wrong", "stats"])
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, "realtime-push: error: 401 unauthorized: wrong API key\n")
        status, out, err = yield self.runMain(["--via", "line", "--line", "nonsense", "push", "a", "1"])
        self.assertEqual(status, 2)
        self.assertEqual(err.count("\n"), 1)

    @inlineCallbacks
    def test_keyFile(self) -> Any:
        """
        Without C{--api-key} or C{$REALTIME_API_KEY}, the key is read from
        C{realtime-api.key} in the current directory; with none of them the
        command exits 2 saying where to put one.
        """
        directory = temporaryDirectory(self)
        self.patch(os, "environ", {})
        self.patch(os, "getcwd", lambda: directory)
        status, _, err = yield self.runMain(["--url", self.url, "stats"])
        self.assertEqual(status, 2)
        self.assertIn("no API key", err)
        with open(os.path.join(directory, "realtime-api.key"), "w") as f:
            f.write(KEY + "\n")
        status, out, err = yield self.runMain(["--url", self.url, "stats"])
        self.assertEqual((status, err), (0, ""))

    @inlineCallbacks
    def test_urlFromEnvironment(self) -> Any:
        """
        C{$REALTIME_API_URL} and C{$REALTIME_API_KEY} stand in for the options.
        """
        self.patch(os, "environ", {"REALTIME_API_URL": self.url, "REALTIME_API_KEY": KEY})
        status, _, err = yield self.runMain(["stats"])
        self.assertEqual((status, err), (0, ""))


class OfflineMainTests(SynchronousTestCase):
    """
    The parts of the command that need no server.
    """

    def test_sign(self) -> None:
        """
        C{sign} prints a first packet the hmac verifier accepts.
        """
        out = io.StringIO()
        self.assertEqual(main(["sign", "uid1", "--secret", "s3", "--ttl", "60"], out, io.StringIO()), 0)
        packet = out.getvalue().strip()
        uid, expires, _ = packet.split(":")
        self.assertEqual(checkSignedPacket(b"s3", packet, float(expires) - 30), "uid1")

    def test_usage(self) -> None:
        """
        A usage error exits 2.
        """
        self.assertEqual(main(["push"], io.StringIO(), io.StringIO()), 2)
        self.assertEqual(main([], io.StringIO(), io.StringIO()), 2)

    def test_findApiKey(self) -> None:
        """
        The environment wins over the file; an empty file is no key.
        """
        directory = temporaryDirectory(self)
        self.assertIsNone(findApiKey({}, directory))
        path = os.path.join(directory, "realtime-api.key")
        with open(path, "w") as f:
            f.write("  \n")
        self.assertIsNone(findApiKey({}, directory))
        with open(path, "w") as f:
            f.write("from-file\n")
        self.assertEqual(findApiKey({}, directory), "from-file")
        self.assertEqual(findApiKey({"REALTIME_API_KEY": "from-env"}, directory), "from-env")

    def test_parseData(self) -> None:
        """
        DATA is JSON when it parses, else text.
        """
        self.assertEqual(parseData('{"a": 1}'), {"a": 1})
        self.assertEqual(parseData("42"), 42)
        self.assertEqual(parseData("hello"), "hello")
        self.assertEqual(parseData(""), "")

    def test_signFirstPacketReexported(self) -> None:
        """
        C{realtime.client.blocking.signFirstPacket} is the auth plugin's own.
        """
        self.assertIs(client.signFirstPacket, signFirstPacket)
        self.assertRaises(AttributeError, getattr, client, "noSuchName")
        self.assertIs(realtime.client.signFirstPacket, signFirstPacket)
        self.assertRaises(AttributeError, getattr, realtime.client, "noSuchName")

    def test_packageReexports(self) -> None:
        """
        A backend imports the blocking clients from C{realtime.client}.
        """
        for name in realtime.client.__all__:
            self.assertIs(getattr(realtime.client, name), getattr(client, name))

    def test_noTwistedImported(self) -> None:
        """
        Importing the client loads neither Twisted nor Autobahn, so a backend
        can vendor it.
        """
        code = (
            "import sys, realtime.client, realtime.client.blocking, realtime.client.cli\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'autobahn', 'zope'))\n"
            "print(loaded)\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(realtime.__file__)))
        result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
        self.assertEqual(result.stdout.strip(), "[]")
