"""
Tests for L{realtime.api.backup}: ``GET /api/backup`` over real HTTP/1.1
bytes on an in-memory transport, with backups the test hands over
(L{ManualBackupStore}), so every moment of a download can be looked at:
before the copy exists, while it streams, and after the client left.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.static import NoRangeStaticProducer

from realtime.api.backup import backupFilename
from realtime.store.health import MonitoredStore
from tests.fakes import FaultyStore, ManualBackupStore, ManualBroker
from tests.test_api_http import Api, Response, rawRequest

#: bigger than several of the producer's reads
SIZE = 5 * NoRangeStaticProducer.bufferSize + 123


class BackupEndpointTests(SynchronousTestCase):
    """
    The endpoint over a backup source whose copies come when the test says.
    """

    def setUp(self) -> None:
        self.store = ManualBackupStore()
        self.api = Api(ManualBroker(), backups=self.store)
        self.api.clock.advance(1764613741)  # 2025-12-01T18:29:01Z
        self.data = os.urandom(SIZE)

    def ask(self, **kwargs: Any) -> tuple[Any, StringTransport]:
        """
        Send C{GET /api/backup} on a new connection.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("GET", "/api/backup", **kwargs))
        return channel, transport

    def pump(self, transport: StringTransport) -> int:
        """
        Be a reader that takes what is sent until the answer is complete,
        as the TCP transport does each time its buffer is drained.

        @return: how many reads it took.
        """
        request = self.api.made[-1]
        reads = 0
        while request.producer is not None:
            request.producer.resumeProducing()
            reads += 1
        return reads

    def test_download(self) -> None:
        """
        Nothing is answered until the copy exists; then it is streamed
        whole, as an SQLite file to save under a timestamped name, and
        closed; the next backup may start.
        """
        channel, transport = self.ask()
        self.assertEqual((len(self.store.asked), transport.value()), (1, b""))
        copy = self.store.give(self.data)
        reads = self.pump(transport)
        response = Response(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/vnd.sqlite3")
        self.assertEqual(
            response.headers["content-disposition"], 'attachment; filename="realtime-20251201T182901Z.sqlite3"'
        )
        self.assertEqual(response.headers["cache-control"], "no-store")
        self.assertEqual(response.headers["content-length"], str(SIZE))
        self.assertEqual(response.body, self.data)
        self.assertGreater(reads, 5)
        self.assertTrue(copy.closed)
        self.assertFalse(self.api.resource.backups.busy)  # type: ignore[union-attr]
        self.assertEqual(self.api.resource.backups.served, 1)  # type: ignore[union-attr]
        channel.connectionLost(Failure(ConnectionDone()))

    def test_slowReader(self) -> None:
        """
        The copy is read one buffer at a time, each when the reader took the
        last: a reader that takes nothing holds one buffer, not the file.
        """
        _, transport = self.ask()
        self.store.give(self.data)
        self.assertEqual(transport.value(), b"")
        for _ in range(3):
            self.api.made[-1].producer.resumeProducing()
        self.assertLessEqual(len(transport.value()), 3 * NoRangeStaticProducer.bufferSize + 1024)

    def test_clientLeavesMidDownload(self) -> None:
        """
        A client that disconnects during the download closes the copy (which
        frees its space) and lets the next backup in; nothing is logged.
        """
        channel, transport = self.ask()
        copy = self.store.give(self.data)
        self.api.made[-1].producer.resumeProducing()
        # what a TCP transport does when its connection is lost
        transport.producer.stopProducing()
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(copy.closed)
        self.assertFalse(self.api.resource.backups.busy)  # type: ignore[union-attr]
        self.ask()
        self.assertEqual(len(self.store.asked), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_clientLeavesBeforeTheCopy(self) -> None:
        """
        A client that leaves while the copy is made: the copy is closed as
        soon as it exists, nothing is written.
        """
        channel, transport = self.ask()
        channel.connectionLost(Failure(ConnectionLost()))
        copy = self.store.give(self.data)
        self.assertTrue(copy.closed)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(self.api.resource.backups.busy)  # type: ignore[union-attr]
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_oneAtATime(self) -> None:
        """
        While a backup is made or downloaded, another is refused with 409
        backup_in_progress, at once; once it is done, the next is made.
        """
        self.ask()
        _, second = self.ask()
        self.assertEqual(Response(second.value()).error, (409, "backup_in_progress"))
        self.assertEqual(len(self.store.asked), 1)
        first = self.api.made[0]
        self.store.give(self.data)
        _, third = self.ask()
        self.assertEqual(Response(third.value()).error, (409, "backup_in_progress"))
        while first.producer is not None:
            first.producer.resumeProducing()
        self.ask()
        self.assertEqual(len(self.store.asked), 1)

    def test_noDatabase(self) -> None:
        """
        A server whose store is in memory answers 409 no_database, saying
        why.
        """
        self.api = Api(ManualBroker())
        _, transport = self.ask()
        response = Response(transport.value())
        self.assertEqual(response.error, (409, "no_database"))
        self.assertIn("--store memory", response.json["error"]["message"])

    def test_keyAndMethod(self) -> None:
        """
        A backup needs the key, like every endpoint, and a GET.
        """
        _, transport = self.ask(key="wrong")
        self.assertEqual(Response(transport.value()).error, (401, "unauthorized"))
        response = self.api.request("POST", "/api/backup", b"{}")
        self.assertEqual(response.error, (405, "method_not_allowed"))
        self.assertEqual(response.headers["allow"], "GET")
        self.assertEqual(self.store.asked, [])

    def test_storeFailing(self) -> None:
        """
        A store that cannot make the copy (a full disk) is answered like
        every other endpoint: 503 store_unavailable with the reason and
        Retry-After, logged once by the watched store; the next backup may
        start.  During the shutdown: 503 shutting_down.
        """
        faulty = FaultyStore(self.store)
        faulty.fault = sqlite3.OperationalError("database or disk is full")
        monitored = MonitoredStore(faulty)
        self.api = Api(ManualBroker(), backups=monitored)
        _, transport = self.ask()
        response = Response(transport.value())
        self.assertEqual(response.error, (503, "store_unavailable"))
        self.assertIn("database or disk is full", response.json["error"]["message"])
        self.assertEqual(response.headers["retry-after"], "5")
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertFalse(self.api.resource.backups.busy)  # type: ignore[union-attr]
        monitored.close()
        _, transport = self.ask()
        self.assertEqual(Response(transport.value()).error, (503, "shutting_down"))

    def test_filename(self) -> None:
        """
        The file name says when, in UTC, sorting by time.
        """
        self.assertEqual(backupFilename(0), "realtime-19700101T000000Z.sqlite3")
