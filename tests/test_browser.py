"""
The demo page in a real headless Chromium against a real ``twistd -n
realtime``: two pages chat through the server, the backend's pushes appear
on the page, the push console shows the API's own answer, a server without
the chat is explained, and the page reconnects and resumes by itself across
a restart.  One browser serves the whole module.
"""

from __future__ import annotations

import json
import os
import struct
import textwrap
from typing import Any, Iterator

import pytest

from tests.browser import CHAT_ARGS, DemoPage, artifactsDirectory, launchBrowser
from tests.serverprocess import API_KEY, ROOT, ServerProcess, api, fixedPortArgs, freePorts, linePush, waitUntil


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """
    One Chromium for the module.
    """
    yield from launchBrowser()


@pytest.fixture(scope="module")
def chatServer() -> Iterator[ServerProcess]:
    """
    A server with the page's chat room, shared by the tests that only add
    visitors of their own names.
    """
    server = ServerProcess(*CHAT_ARGS).start()
    yield server
    server.stop()


@pytest.fixture
def visitors(browser: Any) -> Iterator[Any]:
    """
    Opens demo pages (C{visitors(url)}) and closes them after the test,
    failing it if any had a script error.
    """
    opened: list[DemoPage] = []

    def visit(url: str) -> DemoPage:
        page = DemoPage(browser, url)
        opened.append(page)
        return page

    yield visit
    for page in opened:
        page.close()


def pageUrl(server: ServerProcess) -> str:
    """
    The page's address on the server's web port.
    """
    return f"http://127.0.0.1:{server.ports['port']}/"


def publish(server: ServerProcess, channel: str, data: object) -> dict[str, Any]:
    """
    Publish through the HTTP API, as a backend does.
    """
    status, body = api(server, "POST", "/api/publish", json.dumps({"channel": channel, "data": data}).encode())
    assert status == 200, body
    return body


def test_twoPagesChat(chatServer: ServerProcess, visitors: Any) -> None:
    """
    Two visitors see each other online and each one's message reaches
    both pages (the sender's marked as its own).
    """
    alice = visitors(pageUrl(chatServer))
    assert alice.mode == "channels"
    alice.join("alice")
    bob = visitors(pageUrl(chatServer)).join("bob")
    alice.waitForOnline("alice", "bob")
    bob.waitForOnline("alice", "bob")
    alice.waitForLine("bob joined")
    alice.say("hi bob")
    assert "hi bob" in bob.waitForLine("hi bob", "theirs")
    alice.waitForLine("hi bob", "mine")
    bob.say("hello <b>alice</b>")
    assert "hello <b>alice</b>" in alice.waitForLine("hello", "theirs"), "text must be shown as text, not HTML"
    bob.page.close()
    alice.waitForLine("bob left")
    alice.waitForOnline("alice")


def test_apiPushAppears(chatServer: ServerProcess, visitors: Any) -> None:
    """
    A push to the visitor's uid through the HTTP API appears on the page as
    sent, and a message the backend publishes to the room appears as the
    backend's.
    """
    dave = visitors(pageUrl(chatServer)).join("dave")
    dave.waitForLine("joined chat:lobby as dave")
    status, body = api(chatServer, "POST", "/api/push", b'{"uid": "dave", "data": {"order": 42}}')
    assert (status, body["delivered"]) == (200, 1)
    assert dave.waitForLine("order", "push").endswith('{"order":42}')
    publish(chatServer, "chat:lobby", {"text": "deploy finished"})
    assert dave.waitForLine("deploy finished", "backend")


def test_consoleShowsTheAnswer(chatServer: ServerProcess, visitors: Any) -> None:
    """
    The push console calls the API across origins with the key and shows
    its JSON answer; the push arrives; a wrong key shows the 401.
    """
    erin = visitors(pageUrl(chatServer)).join("erin")
    erin.waitForLine("joined chat:lobby")
    answer = erin.consolePush(API_KEY, "uid", "erin", "plain words")
    assert answer.startswith("HTTP 200"), answer
    assert json.loads(answer.split("\n", 1)[1]) == {"status": "delivered", "delivered": 1, "uids": {"erin": 1}}
    erin.waitForLine("plain words", "push")
    answer = erin.consolePush("wrong-key", "uid", "erin", "nope")
    assert answer.startswith("HTTP 401") and "wrong API key" in answer, answer
    assert "curl -s" in erin.page.inner_text("#curl")


def test_screenshot(chatServer: ServerProcess, visitors: Any) -> None:
    """
    A screenshot of a chat between two participants with a pushed message,
    saved as a test artifact.
    """
    frank = visitors(pageUrl(chatServer)).join("frank")
    grace = visitors(pageUrl(chatServer)).join("grace")
    frank.waitForOnline("frank", "grace")
    frank.say("Morning! Is the release out?")
    frank.waitForLine("release out", "mine")
    grace.say("Yes, 2.4 shipped ten minutes ago")
    frank.waitForLine("2.4 shipped", "theirs")
    publish(chatServer, "chat:lobby", {"text": "Build #1042 deployed to production"})
    frank.waitForLine("Build #1042", "backend")
    answer = frank.consolePush(API_KEY, "uid", "frank", '{"order": 42, "status": "shipped"}')
    assert answer.startswith("HTTP 200"), answer
    frank.waitForLine("shipped", "push")
    path = os.path.join(artifactsDirectory(), "demo-chat.png")
    frank.page.screenshot(path=path, full_page=True)
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack("!II", head[16:24])
    assert width >= 1000 and height >= 600, (width, height)


def test_defaultServerExplains(visitors: Any) -> None:
    """
    Against the default server (routing uid, uid-first-packet) the page
    says there is no chat and how to get one, and still receives pushes
    as the uid it connects as.
    """
    server = ServerProcess().start()
    try:
        page = visitors(pageUrl(server))
        assert page.mode == "listen"
        notice = page.page.inner_text("#notice")
        assert "--routing channels" in notice and "chat:*:public=true" in notice, notice
        assert page.page.is_disabled("#text")
        page.join("uid1")
        waitUntil(lambda: api(server, "GET", "/api/online?uid=uid1")[1]["online"]["uid1"] == 1)
        assert linePush(server.ports["push-port"], b'{"uid":"uid1","percent":"88%"}\n') == [b"ok"]
        page.waitForLine('{"uid":"uid1","percent":"88%"}', "push")
        # a push that happens to have a "type" field is still a push
        assert linePush(server.ports["push-port"], b'{"uid":"uid1","type":"order","id":7}\n') == [b"ok"]
        page.waitForLine('"type":"order"', "push")
    finally:
        server.stop()


def test_relayChat(visitors: Any) -> None:
    """
    Against C{--routing chat} (a Ratchet-style relay) the page chats without
    the channels protocol: each message reaches the other page.
    """
    server = ServerProcess("--auth", "anonymous", "--routing", "chat").start()
    try:
        ivan = visitors(pageUrl(server))
        assert ivan.mode == "relay"
        ivan.join("ivan")
        # the page shows, and its console pushes to, the uid the server made up
        ivan.page.wait_for_selector("#status:has-text('connected as anon-')")
        uid = ivan.page.input_value("#target")
        assert uid.startswith("anon-") and f"connected as {uid} (shown as ivan)" == ivan.page.inner_text("#status")
        assert ivan.consolePush(API_KEY, "uid", uid, "to the real uid").count('"delivered": 1') == 1
        ivan.waitForLine("to the real uid")
        judy = visitors(pageUrl(server)).join("judy")
        waitUntil(lambda: api(server, "GET", "/api/stats")[1]["connections"] == 2)
        ivan.say("relay works")
        assert "relay works" in judy.waitForLine("relay works", "theirs")
        ivan.waitForLine("relay works", "mine")
    finally:
        server.stop()


def test_reconnectAfterRestart(visitors: Any, tmp_path: Any) -> None:
    """
    The server is stopped (SIGTERM) and started again on the same ports and
    SQLite file; messages published while the page was away arrive once, in
    order, after the page reconnected by itself, and it chats again.

    While the server restarts the page's context is taken offline, so the
    publishes certainly happen before it is back: what it then shows came
    from resuming, not from live delivery.
    """
    ports = freePorts(3)
    args = (*fixedPortArgs(ports), *CHAT_ARGS)
    server = ServerProcess(*args, cwd=str(tmp_path), defaultPorts=False).start()
    try:
        heidi = visitors(pageUrl(server)).join("heidi")
        publish(server, "chat:lobby", {"text": "before the restart"})
        heidi.waitForLine("before the restart", "backend")
        server.stop()
        heidi.page.wait_for_selector("#status[data-state=closed]")
        heidi.context.set_offline(True)
        server = ServerProcess(*args, cwd=str(tmp_path), defaultPorts=False).start()
        assert server.ports["port"] == ports[0]
        for n in range(1, 4):
            publish(server, "chat:lobby", {"text": f"missed {n}"})
        assert api(server, "GET", "/api/presence?channel=chat:lobby")[1]["connections"] == 0
        heidi.context.set_offline(False)
        heidi.page.wait_for_selector("#status[data-state=open]")
        heidi.waitForLine("3 missed messages recovered")
        heidi.say("back online")
        heidi.waitForLine("back online", "mine")
        backend = [line for line in heidi.lines() if line.startswith("backend ")]
        assert backend == [
            "backend before the restart",
            "backend (replayed) missed 1",
            "backend (replayed) missed 2",
            "backend (replayed) missed 3",
        ]
        # one line for the whole outage, in words, however many attempts it took
        disconnected = [line for line in heidi.lines() if "disconnected" in line]
        assert disconnected == ["disconnected (server shutting down); reconnecting by itself"]
    finally:
        server.stop()


def readmeBlock(after: str) -> str:
    """
    The README's literal block that follows the line C{after}, dedented.
    """
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    block = text[text.index(after) + len(after) :].split("\n\n")[0]
    return textwrap.dedent(block.strip("\n"))


def test_readmeChannelsExample(visitors: Any) -> None:
    """
    The README's channels example, pasted as one block into a page served by
    the server its worked example starts: the publish made before the
    socket opened is sent once it is, answered, and received by the
    subscription made with it.
    """
    server = ServerProcess("--auth", "anonymous", *CHAT_ARGS).start()
    try:
        page = visitors(pageUrl(server))
        # what the example logs, kept where the test can read it
        page.page.evaluate("() => { window.logged = []; console.log = (...args) => window.logged.push(args); }")
        page.page.add_script_tag(content=readmeBlock("    // then:\n"))
        page.page.wait_for_function("() => window.logged.length >= 2")
        logged = page.page.evaluate("() => window.logged")
        published = [args[0] for args in logged if isinstance(args[0], dict)]
        received = [args for args in logged if args[0] == 1]
        assert published and published[0]["offset"] == 1, logged
        assert received == [[1, {"text": "hello"}]], logged
    finally:
        server.stop()
