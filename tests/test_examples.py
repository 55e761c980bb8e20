"""
The examples run, against a live server: the PHP scripts with Debian's
``php-cli`` (as a Workerman backend pushes, and with curl), the Python one,
and the WeChat mini program's handshake, sent byte for byte as
``wx.connectSocket`` sends it, with tickets signed by the example backends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import runpy
import secrets
import shutil
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase
from websockets.sync.client import connect

from realtime.auth.wechat import computeSignature
from tests.serverprocess import API_KEY, ROOT, ServerProcess, api, environment, waitUntil
from tests.support import serverFrames

EXAMPLES = os.path.join(ROOT, "examples")
TOKEN = "wechat-example-token-0123456789"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def php() -> str:
    """
    The php command; the test is skipped without it, unless
    C{REALTIME_REQUIRE_PHP} is set (as CI sets it), when it fails.
    """
    found = shutil.which("php")
    if found:
        return found
    if os.environ.get("REALTIME_REQUIRE_PHP"):
        raise AssertionError("REALTIME_REQUIRE_PHP is set but php is not installed (apt-get install php-cli php-curl)")
    raise SkipTest("php is not installed (apt-get install php-cli php-curl); set REALTIME_REQUIRE_PHP to fail instead")


def runExample(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run an example to completion, with the checkout on the Python path.
    """
    return subprocess.run(
        command, env={**environment(), **(env or {})}, capture_output=True, text=True, timeout=30, cwd=ROOT
    )


class PushExampleTests(SynchronousTestCase):
    """
    The push examples against a default server with C{uid1} connected.
    """

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def connected(self, uid: str) -> object:
        """
        A client connected as C{uid}, as the page of Workerman's push example does.
        """
        ws = connect(self.server.url("/")).__enter__()
        self.addCleanup(ws.close)
        ws.send(uid)
        waitUntil(lambda: api(self.server, "GET", f"/api/online?uid={uid}")[1]["online"][uid] == 1)
        return ws

    def test_phpLinePort(self) -> None:
        """
        C{push_line.php} (C{stream_socket_client}, Workerman's Text protocol)
        prints C{ok} and the page receives the line.
        """
        command = php()
        ws = self.connected("php-line")
        address = f"127.0.0.1:{self.server.ports['push-port']}"
        result = runExample(command, os.path.join(EXAMPLES, "php", "push_line.php"), "php-line", address)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ok\n", ""))
        self.assertEqual(json.loads(ws.recv(timeout=5)), {"uid": "php-line", "percent": "88%"})

    def test_phpHttpApi(self) -> None:
        """
        C{push_http.php} (curl, with the key) prints C{ok} and the page
        receives the data.
        """
        command = php()
        ws = self.connected("php-http")
        result = runExample(
            command,
            os.path.join(EXAMPLES, "php", "push_http.php"),
            "php-http",
            self.server.apiUrl(),
            env={"REALTIME_API_KEY": API_KEY},
        )
        self.assertEqual((result.returncode, result.stdout), (0, "ok\n"), result.stderr)
        self.assertIn('"status": "delivered"', result.stderr)
        self.assertEqual(json.loads(ws.recv(timeout=5)), {"percent": "88%"})

    def test_phpWrongKey(self) -> None:
        """
        A wrong key is reported, with a non-zero exit.
        """
        result = runExample(
            php(), os.path.join(EXAMPLES, "php", "push_http.php"), "x", self.server.apiUrl(), env={"REALTIME_API_KEY": "nope"}
        )
        self.assertEqual((result.returncode, result.stdout), (2, "error: wrong API key\n"))

    def test_python(self) -> None:
        """
        C{push.py} pushes through both entry points and prints C{ok} twice.
        """
        ws = self.connected("py")
        result = runExample(
            sys.executable,
            os.path.join(EXAMPLES, "python", "push.py"),
            "py",
            env={
                "REALTIME_API_URL": self.server.apiUrl(),
                "REALTIME_API_KEY": API_KEY,
                "REALTIME_LINE": f"127.0.0.1:{self.server.ports['push-port']}",
            },
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([line.split()[:2] for line in result.stdout.splitlines()], [["http:", "ok"], ["line:", "ok"]])
        self.assertEqual(json.loads(ws.recv(timeout=5)), {"percent": "88%"})
        self.assertEqual(json.loads(ws.recv(timeout=5)), {"uid": "py", "percent": "88%"})

    def pushPy(self, *args: str) -> subprocess.CompletedProcess[str]:
        """
        Run C{push.py} against the test server.
        """
        return runExample(
            sys.executable,
            os.path.join(EXAMPLES, "python", "push.py"),
            *args,
            env={
                "REALTIME_API_URL": self.server.apiUrl(),
                "REALTIME_API_KEY": API_KEY,
                "REALTIME_LINE": f"127.0.0.1:{self.server.ports['push-port']}",
            },
        )

    def test_pythonQueued(self) -> None:
        """
        To a uid that was connected and is no longer, C{push.py} says both
        pushes were queued, and succeeds: they wait in the offline queue.
        """
        ws = self.connected("py-gone")
        ws.close()
        waitUntil(lambda: api(self.server, "GET", "/api/online?uid=py-gone")[1]["online"]["py-gone"] == 0)
        result = self.pushPy("py-gone")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(
            [line.split()[:2] for line in result.stdout.splitlines()], [["http:", "queued"], ["line:", "queued"]]
        )

    def test_pythonHelp(self) -> None:
        """
        C{push.py --help} prints how to use it and pushes nothing.
        """
        result = self.pushPy("--help")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertIn("usage: push.py [UID]", result.stdout)
        self.assertIn("REALTIME_LINE", result.stdout)
        result = self.pushPy("-x")
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertIn("usage: push.py [UID]", result.stderr)


def pythonTicket(uid: str) -> dict[str, str]:
    """
    A ticket signed by C{examples/python/ticket.py}.
    """
    module = runpy.run_path(os.path.join(EXAMPLES, "python", "ticket.py"))
    return module["ticket"](TOKEN, uid)  # type: ignore[no-any-return]


def phpTicket(uid: str) -> dict[str, str]:
    """
    A ticket signed by the mini program's PHP backend, C{server/ticket.php}.
    """
    result = runExample(
        php(), os.path.join(EXAMPLES, "wechat-miniprogram", "server", "ticket.php"), uid, env={"WECHAT_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assertWx1(testCase: SynchronousTestCase, ticket: dict[str, str], uid: str) -> None:
    """
    C{ticket} is signed as README.rst documents mode=wx1, spelled out here
    rather than by calling the server's code: SHA-1 of
    C{wx1:token:timestamp:nonce:uid}, with a nonce of 16 to 32 letters and
    digits.
    """
    text = f"wx1:{TOKEN}:{ticket['timestamp']}:{ticket['nonce']}:{uid}"
    testCase.assertEqual(ticket["signature"], hashlib.sha1(text.encode("utf-8")).hexdigest())
    testCase.assertEqual(ticket["signature"], computeSignature(TOKEN, ticket["timestamp"], ticket["nonce"], uid))
    testCase.assertRegex(ticket["nonce"], r"^[A-Za-z0-9]{16,32}$")


def readmeSnippet(language: str) -> str:
    """
    The C{language} (C{PHP} or C{Python}) literal block of README.rst's
    C{wechat} auth section, dedented.
    """
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("``wechat``\n    The WeChat") : readme.index("``token``\n    A JWT")]
    lines = section[section.index(f"{language}::\n") :].splitlines()[2:]
    block = []
    for line in lines:
        if line and not line.startswith(" " * 8):
            break
        block.append(line[8:])
    return "\n".join(block).strip() + "\n"


def miniProgramHandshake(host: str, path: str, key: bytes, extra: list[str]) -> bytes:
    """
    The opening handshake as a mini program's C{wx.connectSocket} sends it:
    no C{Origin}, the fixed C{servicewechat.com} C{Referer} WeChat documents
    for every request of a mini program, its C{User-Agent}, a
    permessage-deflate offer, and C{extra} (the subprotocol or the
    C{header} fields).
    """
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        *extra,
        "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN",
        "Referer: https://servicewechat.com/wx1234567890abcdef/12/page-frame.html",
        "Accept-Encoding: gzip, deflate",
        "Accept-Language: zh-CN,zh-Hans;q=0.9",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class MiniProgramHandshakeTests(SynchronousTestCase):
    """
    A server with C{--auth wechat} and the mini program's handshake on a
    raw socket.
    """

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess("--auth", "wechat", "--auth-option", f"token={TOKEN}").start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def handshake(self, extra: list[str]) -> tuple[socket.socket, dict[str, str], str, bytes]:
        """
        Send the handshake; the socket, the response headers, its status
        line, and the bytes after the head.
        """
        key = base64.b64encode(os.urandom(16))
        port = self.server.ports["port"]
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(miniProgramHandshake(f"127.0.0.1:{port}", "/ws", key, extra))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            self.assertTrue(chunk, f"connection closed after {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        if status.startswith("HTTP/1.1 101"):
            accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest()).decode()
            self.assertEqual(headers["sec-websocket-accept"], accept)
        return s, headers, status, rest

    def receive(self, s: socket.socket, rest: bytes) -> bytes:
        """
        The payload of the next server frame.
        """
        data = rest
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            data += s.recv(4096)
        [(opcode, payload)] = serverFrames(data)
        self.assertEqual(opcode, 1)
        return payload

    def test_subprotocolEchoed(self) -> None:
        """
        The ticket as a C{wx.} subprotocol (signed by the Python example):
        101, the same subprotocol echoed, and a push arrives on the wire.
        """
        ticket = pythonTicket("mp-alice")
        assertWx1(self, ticket, "mp-alice")
        s, headers, status, rest = self.handshake([f"Sec-WebSocket-Protocol: {ticket['protocol']}"])
        self.assertEqual(status, "HTTP/1.1 101 Switching Protocols")
        self.assertEqual(headers["sec-websocket-protocol"], ticket["protocol"])
        self.assertEqual((headers["upgrade"].lower(), headers["connection"].lower()), ("websocket", "upgrade"))
        waitUntil(lambda: api(self.server, "GET", "/api/online?uid=mp-alice")[1]["online"]["mp-alice"] == 1)
        api(self.server, "POST", "/api/push", b'{"uid": "mp-alice", "data": {"order": 7}}')
        self.assertEqual(json.loads(self.receive(s, rest)), {"order": 7})

    def test_phpTicketAsHeaders(self) -> None:
        """
        A ticket signed by C{server/ticket.php} sent as C{header} fields:
        101 without a subprotocol; replaying it is refused (401).
        """
        ticket = phpTicket("mp-bob")
        assertWx1(self, ticket, "mp-bob")
        fields = [f"{name}: {ticket[name]}" for name in ("uid", "timestamp", "nonce", "signature")]
        s, headers, status, _ = self.handshake(fields)
        self.assertEqual(status, "HTTP/1.1 101 Switching Protocols")
        self.assertNotIn("sec-websocket-protocol", headers)
        _, _, status, _ = self.handshake(fields)
        self.assertEqual(status, "HTTP/1.1 401 nonce already used")

    def test_refusedBeforeAnySocket(self) -> None:
        """
        A signature made with another token, or milliseconds for seconds,
        is refused with 401 and why, as the README of the example says.
        """
        ticket = pythonTicket("mp-carol")
        ticket["signature"] = computeSignature("another-token-0123456789", ticket["timestamp"], ticket["nonce"], "mp-carol")
        proto = "wx.{uid}.{timestamp}.{nonce}.{signature}".format(**ticket)
        self.assertEqual(self.handshake([f"Sec-WebSocket-Protocol: {proto}"])[2], "HTTP/1.1 401 bad signature")
        millis = str(int(time.time() * 1000))
        signature = computeSignature(TOKEN, millis, ticket["nonce"], "mp-carol")
        proto = f"wx.mp-carol.{millis}.{ticket['nonce']}.{signature}"
        self.assertEqual(
            self.handshake([f"Sec-WebSocket-Protocol: {proto}"])[2], "HTTP/1.1 401 timestamp outside the 300 s window"
        )

    def test_resplitRefused(self) -> None:
        """
        A ticket from either backend, its uid and nonce re-split or swapped (issue 10.3), is refused with
        401; the same nonce signed for another uid is refused once the first was used.
        """
        for sign, uid in ((pythonTicket, "mp-dave"), (phpTicket, "mp-erin")):
            ticket = sign(uid)
            joined = uid + ticket["nonce"]
            for forgedUid, forgedNonce in ((joined[:3], joined[3:]), (ticket["nonce"], uid)):
                fields = [f"uid: {forgedUid}", f"nonce: {forgedNonce}"]
                fields += [f"{name}: {ticket[name]}" for name in ("timestamp", "signature")]
                self.assertEqual(self.handshake(fields)[2][:12], "HTTP/1.1 401", (forgedUid, forgedNonce))
            self.assertEqual(self.handshake([f"Sec-WebSocket-Protocol: {ticket['protocol']}"])[2][:12], "HTTP/1.1 101")
            other = {**ticket, "uid": "mp-mallory"}
            other["signature"] = computeSignature(TOKEN, ticket["timestamp"], ticket["nonce"], "mp-mallory")
            proto = "wx.{uid}.{timestamp}.{nonce}.{signature}".format(**other)
            self.assertEqual(self.handshake([f"Sec-WebSocket-Protocol: {proto}"])[2], "HTTP/1.1 401 nonce already used")

    def test_readmeSnippets(self) -> None:
        """
        The PHP and Python lines README.rst gives for signing, run as written, make tickets the server
        accepts.
        """
        code = "$token = getenv('WECHAT_TOKEN'); $uid = 'mp-frank';\n" + readmeSnippet("PHP")
        code += "echo json_encode(['timestamp' => $timestamp, 'nonce' => $nonce, 'signature' => $signature]);"
        result = runExample(php(), "-r", code, env={"WECHAT_TOKEN": TOKEN})
        self.assertEqual(result.returncode, 0, result.stderr)
        tickets = [("mp-frank", json.loads(result.stdout))]
        namespace = {"token": TOKEN, "uid": "mp-grace", "time": time, "secrets": secrets, "hashlib": hashlib}
        exec(readmeSnippet("Python"), namespace)
        tickets.append(("mp-grace", {name: namespace[name] for name in ("timestamp", "nonce", "signature")}))
        for uid, ticket in tickets:
            assertWx1(self, ticket, uid)
            fields = [f"uid: {uid}"] + [f"{name}: {ticket[name]}" for name in ("timestamp", "nonce", "signature")]
            self.assertEqual(self.handshake(fields)[2], "HTTP/1.1 101 Switching Protocols")
