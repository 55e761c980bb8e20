"""
Backups of a real server's database while it runs: downloaded with
``realtime-push backup`` and with plain HTTP, opened with Python's sqlite3,
while the server goes on serving pushes; a download abandoned half-way
leaves nothing behind.  This is the operator's way now that the server
holds its database locked (an outside ``sqlite3 .backup`` is refused).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import closing

from websockets.sync.client import connect

from tests.serverprocess import API_KEY, ServerTestCase, api, environment, linePush, waitUntil

#: published to the channel, so the database is larger than the socket buffers
MESSAGES, SIZE = 80, 128 * 1024
#: the server's files: nothing else may appear in its directory
STATE = {"realtime.sqlite3", "realtime.sqlite3-wal", "realtime.sqlite3.lock"}


def backupCommand(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """
    Run ``realtime-push --url URL backup ARGS`` in its own process.
    """
    code = "import sys; from realtime.client.blocking import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "--url", url, "--api-key", API_KEY, "backup", *args],
        env=environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


class BackupIntegrationTests(ServerTestCase):
    """
    One server with channel history and an offline queue in its SQLite
    store.
    """

    serverArgs = ("--routing", "channels", "--namespace", "news:*:public=true:history=100")

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with connect(cls.server.url("/")) as ws:
            ws.send("away")
            waitUntil(lambda: api(cls.server, "GET", "/api/online?uid=away")[1]["online"]["away"] == 1)
        waitUntil(lambda: api(cls.server, "GET", "/api/online?uid=away")[1]["online"]["away"] == 0)
        (answer,) = linePush(cls.server.ports["push-port"], b'{"uid":"away","note":"kept for later"}\n')
        assert answer == b"queued", answer
        for i in range(MESSAGES):
            body = json.dumps({"channel": "news:big", "data": {"i": i, "pad": "x" * SIZE}}).encode()
            assert api(cls.server, "POST", "/api/publish", body)[0] == 200

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="realtime-backup-")

    def assertNothingLeft(self) -> None:
        """
        The server's directory holds its own files only.
        """
        self.assertEqual(set(os.listdir(self.server.cwd)) - STATE, set())

    def assertBackupOf(self, path: str) -> None:
        """
        C{path} is a sound database holding the channel's history and the
        offline push.
        """
        with closing(sqlite3.connect(path)) as db:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone(), ("ok",))
            rows = db.execute("SELECT offset, payload FROM messages WHERE stream = 'news:big' ORDER BY offset")
            self.assertEqual([(o, json.loads(p)["i"]) for o, p in rows], [(i + 1, i) for i in range(MESSAGES)])
            [(payload,)] = db.execute("SELECT payload FROM offline WHERE uid = 'away'").fetchall()
            self.assertEqual(json.loads(payload)["note"], "kept for later")

    def test_outsideBackupRefused(self) -> None:
        """
        Why the server makes backups: another process cannot read the file
        while it runs.
        """
        with closing(sqlite3.connect(os.path.join(self.server.cwd, "realtime.sqlite3"), timeout=0)) as db:
            with self.assertRaisesRegex(sqlite3.OperationalError, "locked"):
                db.execute("SELECT count(*) FROM messages").fetchone()

    def test_command(self) -> None:
        """
        ``realtime-push backup FILE`` saves the database under FILE, exit 0,
        leaving no partial file beside it and no copy beside the database.
        """
        path = os.path.join(self.directory, "backup.sqlite3")
        done = backupCommand(self.server.apiUrl(), path)
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertEqual(done.stdout, f"{path}: {os.path.getsize(path)} bytes\n")
        self.assertBackupOf(path)
        self.assertEqual(os.listdir(self.directory), ["backup.sqlite3"])
        self.assertNothingLeft()

    def test_commandRefused(self) -> None:
        """
        A refused backup exits 2 with the server's reason and leaves no file.
        """
        path = os.path.join(self.directory, "backup.sqlite3")
        code = "import sys; from realtime.client.blocking import main; sys.exit(main())"
        done = subprocess.run(
            [sys.executable, "-c", code, "--url", self.server.apiUrl(), "--api-key", "wrong", "backup", path],
            env=environment(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stderr), (2, "realtime-push: error: 401 unauthorized: wrong API key\n"))
        self.assertEqual(os.listdir(self.directory), [])

    def test_plainHttp(self) -> None:
        """
        What curl does: one GET with the key, saved as it comes.
        """
        request = urllib.request.Request(self.server.apiUrl() + "/api/backup", headers={"Authorization": f"Bearer {API_KEY}"})
        path = os.path.join(self.directory, "curl.sqlite3")
        with urllib.request.urlopen(request, timeout=30) as response, open(path, "wb") as f:
            self.assertEqual(response.headers["Content-Type"], "application/vnd.sqlite3")
            self.assertRegex(
                response.headers["Content-Disposition"], r'^attachment; filename="realtime-\d{8}T\d{6}Z\.sqlite3"$'
            )
            while chunk := response.read(65536):
                f.write(chunk)
        self.assertEqual(os.path.getsize(path), int(response.headers["Content-Length"]))
        self.assertBackupOf(path)
        self.assertNothingLeft()

    def slowDownload(self) -> tuple[socket.socket, int, bytes]:
        """
        Start a download whose reader takes nothing after the head, with a
        small receive buffer, so the server is left mid-file.

        @return: the socket, the Content-Length, and the body received
            with the head.
        """
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", self.server.ports["api-port"]))
        s.sendall(f"GET /api/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1024)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head[:200])
        head, _, body = head.partition(b"\r\n\r\n")
        [length] = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        return s, int(length), body

    def test_servesDuringDownload(self) -> None:
        """
        While a download is under way the server answers pushes on both
        ports, refuses a second backup (409 backup_in_progress), and its
        directory holds no copy; the download then completes, the
        database as it was when it began.
        """
        s, length, body = self.slowDownload()
        self.assertGreater(length, MESSAGES * SIZE)
        with s:
            self.assertEqual(linePush(self.server.ports["push-port"], b'{"uid":"nobody"}\n'), [b"fail"])
            status, answer = api(self.server, "POST", "/api/publish", b'{"channel": "news:other", "data": 1}')
            self.assertEqual((status, answer["offset"]), (200, 1))
            status, answer = api(self.server, "GET", "/api/backup")
            self.assertEqual((status, answer["error"]["code"]), (409, "backup_in_progress"))
            self.assertNothingLeft()
            path = os.path.join(self.directory, "slow.sqlite3")
            with open(path, "wb") as f:
                f.write(body)
                while f.tell() < length and (chunk := s.recv(min(1 << 20, length - f.tell()))):
                    f.write(chunk)
        self.assertEqual(os.path.getsize(path), length)
        self.assertBackupOf(path)

    def test_abandonedDownload(self) -> None:
        """
        A client that disconnects mid-download leaves nothing in the
        server's directory, and the next backup is served.
        """
        self.slowDownload()[0].close()
        waitUntil(lambda: backupCommand(self.server.apiUrl(), os.path.join(self.directory, "b.sqlite3")).returncode == 0, 30)
        self.assertNothingLeft()
        self.assertIsNone(self.server.process.poll())  # type: ignore[union-attr]
