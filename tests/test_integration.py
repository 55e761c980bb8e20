"""
End to end: a real ``twistd -n realtime`` subprocess, real sockets, and an
independent WebSocket client (the ``websockets`` library), doing what the
README's tour and Workerman's push example do.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request

from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import serverprocess
from tests.pluginsource import realtimeImports
from tests.serverprocess import API_KEY, ServerProcess, api, linePush, run, waitUntil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerTestCase(serverprocess.ServerTestCase):
    """
    One server per test class, and its API.
    """

    def online(self, uid: str) -> int:
        status, body = api(self.server, "GET", f"/api/online?uid={uid}")
        self.assertEqual(status, 200, body)
        return body["online"][uid]


class WorkermanPushTests(ServerTestCase):
    """
    The default server is Workerman's push service.
    """

    def test_firstPacketThenLinePush(self) -> None:
        """
        A client sends its uid first; a JSON line for that uid reaches it
        verbatim and the backend reads C{ok}; an unknown uid reads C{fail}.
        """
        with connect(self.server.url("/")) as ws:
            ws.send("uid1")
            waitUntil(lambda: self.online("uid1") == 1)
            replies = linePush(
                self.server.ports["push-port"], b'{"uid":"uid1","percent":"88%"}\n', b'{"uid":"nobody"}\n'
            )
            self.assertEqual(replies, [b"ok", b"fail"])
            self.assertEqual(ws.recv(timeout=5), '{"uid":"uid1","percent":"88%"}')

    def test_halfClose(self) -> None:
        """
        A backend that shuts down its sending side after its line (``nc -N``)
        still reads the answer, then the server closes.
        """
        with socket.create_connection(("127.0.0.1", self.server.ports["push-port"]), timeout=10) as s:
            s.sendall(b'{"uid":"nobody-here"}')
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(100):
                data += chunk
        self.assertEqual(data, b"fail\n")

    def test_malformedLinesKeepConnection(self) -> None:
        """
        Bad lines get an error line each and the connection stays usable.
        """
        replies = linePush(self.server.ports["push-port"], b"not json\n", b"[1]\n", b'{"uid":"nobody"}\n')
        self.assertTrue(replies[0].startswith(b"error: invalid JSON"), replies)
        self.assertTrue(replies[1].startswith(b"error: "), replies)
        self.assertEqual(replies[2], b"fail")

    def test_manyConnectionsOneUid(self) -> None:
        """
        Two tabs of one uid both get the push; after one closes, the other
        still does.
        """
        with connect(self.server.url("/")) as a, connect(self.server.url("/ws")) as b:
            a.send("uid2")
            b.send("uid2")
            waitUntil(lambda: self.online("uid2") == 2)
            self.assertEqual(linePush(self.server.ports["push-port"], b'{"uid":"uid2","n":1}\n'), [b"ok"])
            self.assertEqual(a.recv(timeout=5), '{"uid":"uid2","n":1}')
            self.assertEqual(b.recv(timeout=5), '{"uid":"uid2","n":1}')
            a.close()
            waitUntil(lambda: self.online("uid2") == 1)
            status, body = api(self.server, "POST", "/api/push", b'{"uid":"uid2","data":"still here"}')
            self.assertEqual((status, body["delivered"]), (200, 1))
            self.assertEqual(b.recv(timeout=5), "still here")

    def test_clientMessageRefused(self) -> None:
        """
        With uid routing, a message from the client gets an error frame.
        """
        with connect(self.server.url("/")) as ws:
            ws.send("uid3")
            ws.send("can I talk?")
            error = json.loads(ws.recv(timeout=5))
            self.assertEqual((error["type"], error["code"]), ("error", "push-only"))

    def test_httpApi(self) -> None:
        """
        The HTTP API pushes with the key, refuses without it (401), refuses
        broken JSON (400) and oversized bodies (413).
        """
        with connect(self.server.url("/")) as ws:
            ws.send("uid4")
            waitUntil(lambda: self.online("uid4") == 1)
            status, body = api(self.server, "POST", "/api/push", b'{"uid":"uid4","data":{"percent":"88%"}}')
            self.assertEqual((status, body["status"], body["delivered"]), (200, "delivered", 1))
            self.assertEqual(json.loads(ws.recv(timeout=5)), {"percent": "88%"})
            status, body = api(self.server, "POST", "/api/broadcast", b'{"data":"to all"}')
            self.assertEqual(status, 200)
            self.assertGreaterEqual(body["delivered"], 1)
            self.assertEqual(ws.recv(timeout=5), "to all")
        self.assertEqual(api(self.server, "POST", "/api/push", b'{"uid":"uid4","data":1}', key=None)[0], 401)
        self.assertEqual(api(self.server, "POST", "/api/push", b'{"uid":"uid4","data":1}', key="wrong")[0], 401)
        status, body = api(self.server, "POST", "/api/push", b'{"uid": "uid4", "data": ')
        self.assertEqual(status, 400)
        self.assertIn("message", body["error"])
        status, body = api(self.server, "POST", "/api/push", b'{"uid":"x","data":"' + b"a" * 1100000 + b'"}')
        self.assertEqual(status, 413)
        status, body = api(self.server, "GET", "/api/stats")
        self.assertEqual(status, 200)
        self.assertIn("connections", body)

    def test_oversizedMessageClosed(self) -> None:
        """
        A client message over --max-message-size is closed with 1009 and the
        server keeps serving.
        """
        with connect(self.server.url("/"), max_size=None) as ws:
            ws.send("uid5")
            ws.send("x" * (1024 * 1024 + 1))
            with self.assertRaises(ConnectionClosed) as caught:
                ws.recv(timeout=5)
            self.assertEqual(caught.exception.rcvd.code, 1009)
        with connect(self.server.url("/")) as ws:
            ws.send("uid5")
            waitUntil(lambda: self.online("uid5") == 1)

    def test_pageServed(self) -> None:
        """
        The WebSocket port also serves the page at C{/}.
        """
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.ports['port']}/", timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertIn(b"<title>realtime</title>", r.read())

    def test_insecureWarning(self) -> None:
        """
        The demo mode (verify=none) is warned about loudly at startup.
        """
        self.server.waitFor("INSECURE: auth 'uid-first-packet' with verify=none")


class ChatTests(ServerTestCase):
    """
    C{--routing chat} is a Ratchet-style relay chat room.
    """

    serverArgs = ("--auth", "anonymous", "--routing", "chat")

    def test_threeClients(self) -> None:
        """
        Each message reaches the two other clients and not its sender.
        """
        with connect(self.server.url("/")) as a, connect(self.server.url("/")) as b, connect(self.server.url("/")) as c:
            waitUntil(lambda: api(self.server, "GET", "/api/stats")[1]["connections"] == 3)
            a.send("hello from a")
            self.assertEqual(b.recv(timeout=5), "hello from a")
            self.assertEqual(c.recv(timeout=5), "hello from a")
            c.send(b"\x00binary from c")
            self.assertEqual(a.recv(timeout=5), b"\x00binary from c")
            self.assertEqual(b.recv(timeout=5), b"\x00binary from c")
            with self.assertRaises(TimeoutError):
                a.recv(timeout=0.3)
            with self.assertRaises(TimeoutError):
                c.recv(timeout=0.1)


class EchoTests(ServerTestCase):
    """
    C{--routing echo} is the conformance testee.
    """

    serverArgs = ("--auth", "anonymous", "--routing", "echo")

    def test_echo(self) -> None:
        """
        Text comes back as text, binary as binary, in order.
        """
        with connect(self.server.url("/")) as ws:
            ws.send("héllo")
            ws.send(b"\x00\x01\xff")
            ws.send(["frag", "mented"])
            self.assertEqual(ws.recv(timeout=5), "héllo")
            self.assertEqual(ws.recv(timeout=5), b"\x00\x01\xff")
            self.assertEqual(ws.recv(timeout=5), "fragmented")


class LifecycleTests(SynchronousTestCase):
    """
    Starting, stopping and refusing to start.
    """

    def test_sigtermClosesClients(self) -> None:
        """
        On SIGTERM every client gets close 1001 and the server shuts down
        without errors.
        """
        server = ServerProcess().start()
        try:
            with connect(server.url("/")) as ws:
                ws.send("uid1")
                waitUntil(lambda: api(server, "GET", "/api/online?uid=uid1")[1]["online"]["uid1"] == 1)
                server.process.terminate()
                with self.assertRaises(ConnectionClosed) as caught:
                    ws.recv(timeout=10)
                self.assertEqual(caught.exception.rcvd.code, 1001)
            # twistd re-raises the signal it stopped on once shut down cleanly
            self.assertIn(server.process.wait(15), (0, -15))
            self.assertNotIn("Traceback", server.output)
        finally:
            server.stop()

    def test_portInUse(self) -> None:
        """
        A port that cannot be bound stops the start, naming the option.
        """
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = run(["--port", f"tcp:{port}:interface=127.0.0.1", "--api-port", "none", "--push-port", "none"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"cannot listen on --port tcp:{port}:interface=127.0.0.1", result.stdout + result.stderr)

    def test_badOptionRefused(self) -> None:
        """
        A bad option value stops the start with a message naming it.
        """
        result = run(["--max-message-size", "lots"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--max-message-size must be a whole number", result.stdout + result.stderr)
        result = run(["--auth", "nope"])
        self.assertIn("unknown auth 'nope' (--auth); available: anonymous", result.stdout + result.stderr)

    def test_defaultApiKeyFile(self) -> None:
        """
        Without --api-key the server creates realtime-api.key and requires it.
        """
        server = ServerProcess(apiKey=None).start()
        try:
            server.waitFor("HTTP API key generated into realtime-api.key")
            with open(os.path.join(server.cwd, "realtime-api.key")) as f:
                key = f.read().strip()
            self.assertEqual(api(server, "GET", "/api/stats", key=key)[0], 200)
            self.assertEqual(api(server, "GET", "/api/stats", key=API_KEY)[0], 401)
        finally:
            server.stop()


class PluginDirTests(SynchronousTestCase):
    """
    A custom auth plugin in a temporary --plugin-dir is discovered, listed
    and used; a broken one next to it is reported by name.
    """

    PLUGIN = '''
from realtime.plugin import Accept, Deny, IAuthenticator, IAuthenticatorFactory, IPlugin, Identity
from realtime.plugin import PluginOptions, implementer


@implementer(IAuthenticator)
class StaticKeyAuthenticator:
    def __init__(self, keys):
        self.keys = keys

    def checkHandshake(self, request):
        uid = self.keys.get(request.param("key") or "")
        return Accept(Identity(uid)) if uid else Deny(403, "unknown key")


@implementer(IPlugin, IAuthenticatorFactory)
class StaticKeyFactory:
    name = "static-key"
    description = "one key per user, from the command line"
    options = {"users": "KEY/UID pairs separated by commas"}

    def buildAuthenticator(self, options, reactor):
        opts = PluginOptions(self.name, options, self.options)
        pairs = [p.split("/", 1) for p in opts.string("users", required=True).split(",")]
        return StaticKeyAuthenticator({k: u for k, u in pairs})


staticKey = StaticKeyFactory()
'''

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        with open(os.path.join(self.directory, "itest_static_key.py"), "w") as f:
            f.write(self.PLUGIN)
        with open(os.path.join(self.directory, "itest_broken.py"), "w") as f:
            f.write("raise RuntimeError('this plugin is broken on purpose')\n")

    def test_facadeOnly(self) -> None:
        """
        The plugin is written against C{realtime.plugin} alone.
        """
        self.assertEqual(realtimeImports(self.PLUGIN), {"realtime.plugin"})

    def test_listed(self) -> None:
        """
        C{--list-plugins} shows the custom plugin, its options, and the
        broken file by name.
        """
        result = run(["--plugin-dir", self.directory, "--list-plugins"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("static-key", result.stdout)
        self.assertIn("users=...", result.stdout)
        self.assertIn(os.path.join(self.directory, "itest_broken.py"), result.stdout)
        self.assertIn("wechat", result.stdout)

    def test_used(self) -> None:
        """
        The server authenticates with the custom plugin.
        """
        server = ServerProcess(
            "--plugin-dir", self.directory, "--auth", "static-key", "--auth-option", "users=k1/alice,k2/bob"
        ).start()
        try:
            server.waitFor("itest_broken.py could not be imported")
            with connect(server.url("/?key=k2")) as ws:
                waitUntil(lambda: api(server, "GET", "/api/online?uid=bob")[1]["online"]["bob"] == 1)
                self.assertEqual(api(server, "POST", "/api/push", b'{"uid":"bob","data":"hi bob"}')[0], 200)
                self.assertEqual(ws.recv(timeout=5), "hi bob")
            with self.assertRaises(InvalidStatus) as caught:
                connect(server.url("/?key=nope"))
            self.assertEqual(caught.exception.response.status_code, 403)
        finally:
            server.stop()


class WeChatTests(ServerTestCase):
    """
    C{--auth wechat}: the mini program's signed handshake (done
    right): accepted when correct, refused at the handshake otherwise.
    """

    TOKEN = "mini-program-token-0123456789"
    serverArgs = ("--auth", "wechat", "--auth-option", f"token={TOKEN}")

    def signed(self, uid: str, nonce: str, timestamp: int | None = None) -> dict[str, str]:
        from realtime.auth.wechat import computeSignature

        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce.replace("-", "").ljust(16, "0")  # letters and digits, 16 or more
        return {"uid": uid, "timestamp": ts, "nonce": nonce, "signature": computeSignature(self.TOKEN, ts, nonce, uid)}

    def refusedWith(self, url: str, **kw) -> tuple[int, bytes]:
        with self.assertRaises(InvalidStatus) as caught:
            connect(url, **kw)
        return caught.exception.response.status_code, caught.exception.response.reason_phrase

    def test_queryHeadersAndSubprotocol(self) -> None:
        """
        A correct signature is accepted from the query string, from headers
        (wx.connectSocket's C{header}), and from a subprotocol, which is
        echoed so WeChat accepts the handshake.
        """
        from urllib.parse import urlencode

        with connect(self.server.url("/ws?" + urlencode(self.signed("wx1", "n-query")))) as ws:
            waitUntil(lambda: self.online("wx1") == 1)
            api(self.server, "POST", "/api/push", b'{"uid":"wx1","data":{"order":42}}')
            self.assertEqual(json.loads(ws.recv(timeout=5)), {"order": 42})
        with connect(self.server.url("/"), additional_headers=self.signed("wx2", "n-header")):
            waitUntil(lambda: self.online("wx2") == 1)
        f = self.signed("wx3", "n-proto")
        protocol = f"wx.{f['uid']}.{f['timestamp']}.{f['nonce']}.{f['signature']}"
        with connect(self.server.url("/"), subprotocols=[protocol]) as ws:
            self.assertEqual(ws.subprotocol, protocol)
            waitUntil(lambda: self.online("wx3") == 1)

    def test_refusals(self) -> None:
        """
        A wrong signature, a stale timestamp and a replayed nonce are each
        refused with 401 and the reason, before any socket is accepted.
        """
        from urllib.parse import urlencode

        bad = self.signed("wx4", "n-bad")
        bad["signature"] = "0" * 40
        self.assertEqual(self.refusedWith(self.server.url("/?" + urlencode(bad))), (401, "bad signature"))
        stale = self.signed("wx4", "n-stale", timestamp=int(time.time()) - 3600)
        self.assertEqual(
            self.refusedWith(self.server.url("/?" + urlencode(stale))), (401, "timestamp outside the 300 s window")
        )
        once = self.server.url("/?" + urlencode(self.signed("wx4", "n-once")))
        with connect(once):
            pass
        self.assertEqual(self.refusedWith(once), (401, "nonce already used"))
        self.assertEqual(self.refusedWith(self.server.url("/")), (401, "missing signature"))
