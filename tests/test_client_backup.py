"""
Tests for L{HttpPushClient.backup} and ``realtime-push backup``: a real API
site over a real SQLite store on loopback, and a server that breaks off.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

from realtime.client.blocking import HttpPushClient, PushError
from realtime.store.sqlite import SQLiteMessageStore
from tests.serverprocess import environment
from tests.store_contract import KEEP, T0
from tests.test_client import KEY, ServerTestCase, temporaryDirectory


class BrokenOff(Protocol):
    """
    Answers any request with a head promising more body than it sends,
    then closes: a download cut short.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.sqlite3\r\nContent-Length: 100000\r\n\r\n")
        self.transport.write(b"SQLite format 3\x00")
        self.transport.loseConnection()


class BackupClientTests(ServerTestCase):
    """
    The client's backup against the real API over a real SQLite store.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        from twisted.internet import reactor

        self.directory = temporaryDirectory(self)
        self.backups = yield SQLiteMessageStore.open(os.path.join(self.directory, "server.sqlite3"), reactor)
        self.addCleanup(self.backups.close)
        yield self.backups.append("news", b"kept", False, KEEP, T0)
        yield super().setUp()

    def assertBackup(self, path: str) -> None:
        with closing(sqlite3.connect(path)) as db:
            self.assertEqual(db.execute("SELECT stream, payload FROM messages").fetchall(), [("news", b"kept")])

    def command(self, *args: str) -> Any:
        """
        Run ``realtime-push --url ... backup ARGS`` in its own process (off
        the reactor thread, which serves it).
        """
        code = "import sys; from realtime.client.cli import main; sys.exit(main())"
        argv = [sys.executable, "-c", code, "--url", self.url, "--api-key", KEY, "backup", *args]
        return deferToThread(subprocess.run, argv, env=environment(), capture_output=True, timeout=60)

    @inlineCallbacks
    def test_backup(self) -> Any:
        """
        C{backup} writes the database to the file it is given and says how
        many bytes; the connection stays usable.
        """
        out = io.BytesIO()
        size = yield deferToThread(self.http.backup, out)
        self.assertEqual(size, len(out.getvalue()))
        path = os.path.join(self.directory, "copy.sqlite3")
        with open(path, "wb") as f:
            f.write(out.getvalue())
        self.assertBackup(path)
        stats = yield deferToThread(self.http.stats)
        self.assertIn("uptime", stats)

    @inlineCallbacks
    def test_command(self) -> Any:
        """
        ``backup FILE`` saves it and exits 0; ``backup -`` writes it to
        standard output.
        """
        path = os.path.join(self.directory, "saved.sqlite3")
        done = yield self.command(path)
        self.assertEqual((done.returncode, done.stderr), (0, b""))
        self.assertBackup(path)
        done = yield self.command("-")
        self.assertEqual((done.returncode, done.stderr), (0, b""))
        with open(path, "rb") as f:
            self.assertEqual(done.stdout, f.read())

    @inlineCallbacks
    def test_brokenOff(self) -> Any:
        """
        A download cut short raises L{PushError} (the client does not send
        it again), and the command exits 2 leaving no file, not even the
        partial one.
        """
        from twisted.internet import reactor

        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Factory.forProtocol(BrokenOff))
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        client = HttpPushClient(url, apiKey=KEY)
        self.clients.append(client)
        e = yield self.assertFailure(deferToThread(client.backup, io.BytesIO()), PushError)
        self.assertEqual(e.code, "connection_failed")
        self.assertIn("16 of 100000 bytes", e.message)
        self.url = url
        target = os.path.join(self.directory, "target")
        os.mkdir(target)
        done = yield self.command(os.path.join(target, "cut.sqlite3"))
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"broke off", done.stderr)
        self.assertEqual(os.listdir(target), [])
