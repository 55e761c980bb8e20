"""
A third party's routing plugin that asks the backend over HTTP (the webhook
routing DESIGN.md names), written against the public interfaces alone and
loaded from a temporary ``--plugin-dir`` into a real ``twistd -n realtime``:
each client message is POSTed with treq to a twisted.web backend in this
test, and the backend's JSON answer names the actions (a reply to the
sender, pushes to uids).  A slow backend does not reorder one session's
answers nor hold up other sessions; a failing one gets the client a clear
error (or, when the plugin itself fails, a 1011 close) and the server goes
on serving.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.pluginsource import realtimeImports
from tests.serverprocess import API_KEY, ServerProcess

#: the plugin as its author writes it: realtime.plugin is all it imports of
#: the server
PLUGIN = '''
"""
``--routing webhook``: every client message goes to the backend, whose JSON
answer says what to do: ``{"reply": text}`` to the sender, ``{"push": {uid:
text}}`` to every session of each uid.
"""

import treq

from realtime.plugin import (
    Deliver, IPlugin, IRoutingStrategy, IRoutingStrategyFactory, PluginOptions, Refuse, Reply, implementer,
)


@implementer(IRoutingStrategy)
class WebhookStrategy:
    def __init__(self, url):
        self.url = url

    def route(self, session, payload, isBinary, registry):
        if isBinary:
            return (Refuse("text_only", "send text"),)
        body = {"uid": session.uid, "session": session.sessionId, "text": payload.decode("utf-8")}
        return treq.post(self.url, json=body, timeout=10).addCallback(self.answered, registry)

    def answered(self, response, registry):
        if response.code != 200:
            # the client is told, and may go on
            return (Refuse("backend_failed", f"the backend answered {response.code}"),)
        # an answer that is not JSON fails the Deferred: the server logs it
        # and closes this connection with 1011
        return response.json().addCallback(self.actions, registry)

    def actions(self, answer, registry):
        actions = []
        if "reply" in answer:
            actions.append(Reply(answer["reply"].encode("utf-8")))
        for uid, text in answer.get("push", {}).items():
            actions.append(Deliver(tuple(registry.sessionsOf(uid)), text.encode("utf-8")))
        return actions


@implementer(IPlugin, IRoutingStrategyFactory)
class WebhookStrategyFactory:
    name = "webhook"
    description = "ask the backend (POST url) what to do with each client message"
    options = {"url": "where to POST each message (required)"}

    def buildRoutingStrategy(self, options, reactor):
        return WebhookStrategy(PluginOptions(self.name, options, self.options).string("url", required=True))


webhook = WebhookStrategyFactory()
'''


class Backend(Resource):
    """
    The backend the plugin asks, answering by the message's text:
    C{hold:N} waits until C{release} arrives, then replies and pushes
    C{late N} to bob; C{tell:UID:TEXT} pushes; C{status:500} fails;
    C{garbage} answers 200 with a body that is not JSON; anything else is
    replied to.

    @ivar seen: C{(uid, text)} of each request, in arrival order.
    @ivar answered: the texts answered, in the order they were.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self.answered: list[str] = []
        self._held: list[tuple[Any, str]] = []

    def render_POST(self, request: Any) -> bytes | int:
        body = json.loads(request.content.read())
        uid, text = body["uid"], body["text"]
        self.seen.append((uid, text))
        if text.startswith("hold:"):
            self._held.append((request, text))
            return NOT_DONE_YET
        if text == "status:500":
            request.setResponseCode(500)
            return self._answer(text, b"{}")
        if text == "garbage":
            return self._answer(text, b"this is not JSON")
        answer: dict[str, Any] = {"reply": f"re {text}"}
        if text.startswith("tell:"):
            _, target, message = text.split(":", 2)
            answer["push"] = {target: f"{uid}: {message}"}
        if text == "release":
            # bob's answer first, then what was held
            reply = self._answer(text, json.dumps(answer).encode())
            held, self._held = self._held, []
            for heldRequest, heldText in held:
                late = {"reply": f"re {heldText}", "push": {"bob": f"late {heldText[5:]}"}}
                heldRequest.write(self._answer(heldText, json.dumps(late).encode()))
                heldRequest.finish()
            return reply
        return self._answer(text, json.dumps(answer).encode())

    def _answer(self, text: str, body: bytes) -> bytes:
        self.answered.append(text)
        return body


class TrackedConnection(ProtocolWrapper):
    """
    Fires C{lost} when the connection is gone.
    """

    def __init__(self, factory: Any, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Tracked(WrappingFactory):
    """
    The backend's site, remembering its connections so the test can wait
    until the server's keep-alive connections to it are gone.
    """

    protocol = TrackedConnection

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.served: list[TrackedConnection] = []

    def buildProtocol(self, addr: Any) -> Any:
        p = super().buildProtocol(addr)
        self.served.append(p)
        return p


def waitUntil(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """
    Poll C{predicate} (from a thread) until it holds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


class WebhookRoutingTests(TestCase):
    """
    The webhook plugin in a real server, with real WebSocket clients (in
    threads, so this test's reactor serves the backend meanwhile).
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        from twisted.internet import reactor

        self.backend = Backend()
        self.site = Tracked(Site(self.backend))
        self.port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(self.site)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "thirdparty_webhook.py"), "w") as f:
            f.write(PLUGIN)
        url = f"http://127.0.0.1:{self.port.getHost().port}/hook"
        self.server = ServerProcess("--plugin-dir", directory, "--routing", "webhook", "--routing-option", f"url={url}")
        self.addCleanup(self.shutDown)
        yield deferToThread(self.server.start)

    @inlineCallbacks
    def shutDown(self) -> Any:
        """
        Stop the server, wait for its connections to the backend to close,
        stop listening; the server must have logged no unhandled error.
        """
        yield deferToThread(self.server.stop)
        yield gatherResults([p.lost for p in self.site.served if not p.lost.called])
        yield self.port.stopListening()
        self.assertNotIn("Unhandled", self.server.output)

    @contextmanager
    def client(self, uid: str) -> Iterator[Any]:
        """
        A WebSocket client authenticated as C{uid} (the first message names it).
        """
        with connect(self.server.url("/"), open_timeout=10) as ws:
            ws.send(uid)
            yield ws

    def online(self, uid: str) -> int:
        """
        How many connections the server counts for C{uid} (its HTTP API).
        """
        request = urllib.request.Request(
            f"{self.server.apiUrl()}/api/online?uid={uid}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(json.loads(response.read())["online"][uid])

    def test_facadeOnly(self) -> None:
        """
        The plugin imports C{realtime.plugin} and nothing else of the server.
        """
        self.assertEqual(realtimeImports(PLUGIN), {"realtime.plugin"})

    def test_replyAndPush(self) -> None:
        """
        The backend is told who sent what; its answer's reply goes to the
        sender and its push to every session of the uid it names.
        """

        def talk() -> None:
            with self.client("alice") as alice, self.client("bob") as bob, self.client("bob") as bob2:
                bob.send("hello")
                self.assertEqual(bob.recv(timeout=10), "re hello")
                bob2.send("hello")
                self.assertEqual(bob2.recv(timeout=10), "re hello")
                alice.send("tell:bob:lunch?")
                self.assertEqual(alice.recv(timeout=10), "re tell:bob:lunch?")
                self.assertEqual(bob.recv(timeout=10), "alice: lunch?")
                self.assertEqual(bob2.recv(timeout=10), "alice: lunch?")
                alice.send(b"\x00")
                self.assertEqual(json.loads(alice.recv(timeout=10))["code"], "text_only")
            self.assertIn(("alice", "tell:bob:lunch?"), self.backend.seen)

        return deferToThread(talk)

    def test_slowBackendKeepsOrder(self) -> None:
        """
        Alice's first message is held by the backend while her next two are
        answered at once: she still gets the three replies in the order she
        sent them, and bob, meanwhile, is served without waiting.
        """

        def talk() -> None:
            with self.client("alice") as alice, self.client("bob") as bob:
                for text in ("hold:1", "fast:2", "fast:3"):
                    alice.send(text)
                waitUntil(lambda: {"fast:2", "fast:3"} <= set(self.backend.answered))
                self.assertNotIn("hold:1", self.backend.answered)
                bob.send("release")
                self.assertEqual(bob.recv(timeout=10), "re release")
                self.assertEqual(bob.recv(timeout=10), "late 1")
                self.assertEqual([alice.recv(timeout=10) for _ in range(3)], ["re hold:1", "re fast:2", "re fast:3"])
            self.assertEqual(self.backend.answered[-1], "hold:1")

        return deferToThread(talk)

    def test_backendFailing(self) -> None:
        """
        A backend error reaches the client as an error frame and the
        connection goes on; an answer the plugin cannot read fails its
        Deferred, which the server logs and answers with close 1011, and it
        goes on serving everyone else.
        """

        def talk() -> None:
            with self.client("alice") as alice, self.client("bob") as bob:
                alice.send("status:500")
                error = json.loads(alice.recv(timeout=10))
                self.assertEqual((error["type"], error["code"]), ("error", "backend_failed"))
                self.assertIn("500", error["message"])
                alice.send("still there?")
                self.assertEqual(alice.recv(timeout=10), "re still there?")
                alice.send("garbage")
                with self.assertRaises(ConnectionClosed) as closed:
                    alice.recv(timeout=10)
                self.assertEqual(closed.exception.rcvd.code, 1011)
                bob.send("fine?")
                self.assertEqual(bob.recv(timeout=10), "re fine?")
            self.server.waitFor("routing a message from")

        return deferToThread(talk)

    def test_senderGoneMeanwhile(self) -> None:
        """
        A sender that leaves while its message is with the backend: the
        pushes the answer names are still delivered, its reply is dropped,
        and nothing is logged as an error.
        """

        def talk() -> None:
            with self.client("bob") as bob:
                with self.client("alice") as alice:
                    alice.send("hold:9")
                    waitUntil(lambda: ("alice", "hold:9") in self.backend.seen)
                waitUntil(lambda: self.online("alice") == 0)
                bob.send("release")
                self.assertEqual(bob.recv(timeout=10), "re release")
                self.assertEqual(bob.recv(timeout=10), "late 9")
                bob.send("ping")
                self.assertEqual(bob.recv(timeout=10), "re ping")
            self.assertNotIn("Traceback", self.server.output)

        return deferToThread(talk)
