"""
One SQLite store, one server: a second ``twistd realtime`` on the same
store refuses to start, saying why, instead of sharing offline queues and
history with the first behind its back.
"""

from __future__ import annotations

import shutil

from twisted.trial.unittest import SynchronousTestCase

from tests.serverprocess import ServerProcess


class StoreLockTests(SynchronousTestCase):
    """
    Two real servers in one directory.
    """

    def server(self, *args: str, cwd: str | None = None) -> ServerProcess:
        server = ServerProcess(*args, cwd=cwd)
        self.addCleanup(server.stop)
        if cwd is None:
            self.addCleanup(shutil.rmtree, server.cwd, True)
        return server

    def test_secondServerRefused(self) -> None:
        """
        The second server on the default store exits at once with a
        message naming the store and what to do.
        """
        first = self.server().start()
        second = self.server(cwd=first.cwd)
        with self.assertRaises(RuntimeError) as raised:
            second.start(timeout=60)
        message = str(raised.exception)
        self.assertIn("realtime.sqlite3 is in use by another realtime server", message)
        self.assertIn("--store", message)
        self.assertEqual(second.process.returncode, 1)
        # the first one is unharmed
        self.assertIsNone(first.process.poll())

    def test_otherStoreStarts(self) -> None:
        """
        In the same directory, a server on its own store starts; once the
        first has stopped, its store is free again.
        """
        first = self.server().start()
        other = self.server("--store", "sqlite:other.sqlite3", cwd=first.cwd).start()
        self.assertIsNone(other.process.poll())
        first.stop()
        self.server(cwd=first.cwd).start()
