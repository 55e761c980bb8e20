"""
Real store faults under a real server: the SQLite files made immutable
while it runs (which used to kill it with SIGBUS through the memory-mapped
WAL index), and a full disk (the file size limit of the process lowered
with C{prlimit}, so writes fail with EFBIG as on a full file system;
Python ignores SIGXFSZ).  The server survives, answers each push with the
store's reason, logs the fault once and its end once, and ``/readyz``
says 503 meanwhile.
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import connect

from tests.serverprocess import ServerProcess, api, get, linePush, waitUntil
from tests.support import clientFrame, handshake

FAILING = "message store failing"
AGAIN = "message store working again"


def chattrUsable() -> None:
    """
    Skip (or, with C{REALTIME_REQUIRE_CHATTR} set, fail) unless C{chattr +i}
    works here: it needs root and a file system that has the flag.
    """
    problem = None
    if shutil.which("chattr") is None:
        problem = "chattr is not installed (e2fsprogs)"
    else:
        probe = tempfile.NamedTemporaryFile(dir=tempfile.gettempdir())
        with probe:
            done = subprocess.run(["chattr", "+i", probe.name], capture_output=True, text=True)
            subprocess.run(["chattr", "-i", probe.name], capture_output=True)
        if done.returncode:
            problem = f"chattr +i does not work here (root and ext4/xfs needed): {done.stderr.strip()}"
    if problem is None:
        return
    if os.environ.get("REALTIME_REQUIRE_CHATTR"):
        raise AssertionError(f"REALTIME_REQUIRE_CHATTR is set but {problem}")
    raise SkipTest(problem + "; set REALTIME_REQUIRE_CHATTR to fail instead")


class StoreFaultTests(SynchronousTestCase):
    """
    One server per test, with a uid that connected once, so that pushes to
    it are written to the store.
    """

    def setUp(self) -> None:
        self.server = ServerProcess().start()
        self.addCleanup(self.server.stop)
        with connect(self.server.url("/")) as ws:
            ws.send("away")
            waitUntil(lambda: api(self.server, "GET", "/api/online?uid=away")[1]["online"]["away"] == 1)
        # the connection is recorded in the store a second later
        self.assertEqual(self.push(), b"queued")

    def push(self, size: int = 10) -> bytes:
        line = b'{"uid":"away","pad":"%s"}\n' % (b"x" * size)
        (answer,) = linePush(self.server.ports["push-port"], line)
        return answer

    def said(self, text: str) -> int:
        return self.server.output.count(text)

    def assertFailingThenAnswered(self, reason: str) -> None:
        """
        Five pushes are each answered with C{reason}, the server lives, one
        fault is logged, and C{/readyz} is 503 naming it.
        """
        for _ in range(5):
            self.assertEqual(self.push(4000), b"error: message store unavailable (" + reason.encode() + b")")
        self.assertIsNone(self.server.process.poll(), self.server.output[-2000:])  # type: ignore[union-attr]
        status, body = get(self.server, "/readyz")
        self.assertEqual((status, body["checks"]["store"]), (503, f"failed: message store unavailable ({reason})"))
        # the log line may still be on its way through the pipe the test
        # reads the server's output from (seen once under load)
        self.server.waitFor(FAILING)
        self.assertEqual(self.said(FAILING), 1, self.server.output[-3000:])
        self.assertNotIn("line port push failed", self.server.output)

    def test_immutableFiles(self) -> None:
        """
        With the store's files made immutable, pushes are answered with an
        error (not a SIGBUS), and once they are writable again the store
        works again.
        """
        chattrUsable()
        files = glob.glob(os.path.join(self.server.cwd, "realtime.sqlite3*"))
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            self.assertFailingThenAnswered("disk I/O error")
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)

    def test_fullDisk(self) -> None:
        """
        With no room to grow the store's files, every push is answered with
        the store's reason and logged once; when there is room again,
        C{/readyz} finds it, the recovery is logged once, and pushes queue.
        """
        pid = self.server.process.pid  # type: ignore[union-attr]
        largest = max(os.path.getsize(f) for f in glob.glob(os.path.join(self.server.cwd, "realtime.sqlite3*")))
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (largest + 4096, hard))
        restore: Any = lambda: resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))  # noqa: E731
        try:
            # SQLite says "database or disk is full" for ENOSPC, and this
            # for EFBIG
            self.assertFailingThenAnswered("disk I/O error")
        finally:
            restore()
        deadline = time.monotonic() + 10
        while get(self.server, "/readyz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, self.server.output[-2000:])
            time.sleep(0.1)
        self.assertEqual(self.push(), b"queued")
        self.server.waitFor(AGAIN)
        self.assertEqual((self.said(FAILING), self.said(AGAIN)), (1, 1))


class ShutdownTests(SynchronousTestCase):
    """
    SIGTERM closes the store while the server still waits for its clients
    to leave: pushes that need the store meanwhile are told "shutting
    down", with no traceback.
    """

    def test_pushesDuringShutdown(self) -> None:
        """
        A backend that keeps pushing to an offline uid through SIGTERM reads
        answers, then C{error: shutting down}, until the server is gone;
        never C{error: internal error}, and nothing is logged per push.
        """
        server = ServerProcess().start()
        self.addCleanup(server.stop)
        with connect(server.url("/")) as ws:
            ws.send("away")
            waitUntil(lambda: api(server, "GET", "/api/online?uid=away")[1]["online"]["away"] == 1)
        # a client that never answers the server's close keeps the server
        # in its grace period for a few seconds
        holder = socket.create_connection(("127.0.0.1", server.ports["port"]), timeout=10)
        self.addCleanup(holder.close)
        holder.sendall(handshake("/") + clientFrame(b"holder"))
        waitUntil(lambda: api(server, "GET", "/api/online?uid=holder")[1]["online"]["holder"] == 1)
        backend = socket.create_connection(("127.0.0.1", server.ports["push-port"]), timeout=10)
        self.addCleanup(backend.close)
        reader = backend.makefile("rb")
        # answered, so accepted: the listener stops at SIGTERM, the connection stays
        backend.sendall(b'{"uid":"away"}\n')
        self.assertEqual(reader.readline(), b"queued\n")
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        answers = []
        try:
            while len(answers) < 500:
                backend.sendall(b'{"uid":"away"}\n')
                answer = reader.readline()
                if not answer:
                    break
                answers.append(answer.rstrip(b"\n"))
                time.sleep(0.01)
        except OSError:
            pass
        server.process.wait(15)  # type: ignore[union-attr]
        self.assertIn(b"error: shutting down", answers)
        self.assertEqual(set(answers) - {b"queued", b"error: shutting down"}, set(), answers)
        self.assertNotIn("Traceback", server.output)
