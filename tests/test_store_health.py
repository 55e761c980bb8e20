"""
Tests for L{realtime.store.health}: a failing store is logged once per
change, answered honestly on both push ports, shown by ``/readyz``, and
told apart from the shutdown.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from realtime.api.lineproto import LinePushFactory
from realtime.interfaces import IMessageStore
from realtime.ops.probes import ReadyResource
from realtime.store.health import MonitoredStore
from realtime.store.memory import MemoryMessageStore
from realtime.values import OfflineLimits
from tests.fakes import FaultyStore, ManualBroker
from tests.support import buildRouter, render
from tests.test_api_http import Api

FULL = sqlite3.OperationalError("database or disk is full")


class FailingStoreTests(SynchronousTestCase):
    """
    A router, the line port, the HTTP API and C{/readyz} over a watched store
    whose disk fills up, then has room again.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.faulty = FaultyStore(MemoryMessageStore())
        self.faulty.readsWork = True
        self.store = MonitoredStore(self.faulty)
        self.router = buildRouter(self.clock, self.store, offline=OfflineLimits(10, 60))
        self.successResultOf(self.faulty.inner.markSeen({"away": self.clock.seconds()}))
        self.line = LinePushFactory(self.router).buildProtocol(None)
        self.transport = StringTransport()
        self.line.makeConnection(self.transport)
        self.api = Api(self.router, maxBodySize=4096)
        self.ready = ReadyResource(self.clock, ManualBroker(), self.store, lambda: False)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def answers(self) -> list[bytes]:
        lines = self.transport.value().splitlines()
        self.transport.clear()
        return lines

    def said(self, text: str) -> int:
        """
        How many events were logged whose format contains C{text}.
        """
        return sum(text in (event.get("log_format") or "") for event in self.events)

    def test_interface(self) -> None:
        """
        The watched store is an L{IMessageStore} like the one it watches.
        """
        self.assertTrue(verifyObject(IMessageStore, self.store))

    def test_loggedOnceAnsweredEach(self) -> None:
        """
        While the disk is full every push that needs the store is answered
        with the store's reason on both ports, one traceback is logged in
        all, and C{/readyz} is 503 with the reason; once there is room,
        C{/readyz} finds it (a write), says so once, and pushes queue again.
        """
        self.assertEqual(render(self.ready, DummyRequest([b""]))[0], 200)
        self.faulty.fault = FULL
        self.line.dataReceived(b'{"uid":"away","n":1}\n' * 5)
        self.assertEqual(self.answers(), [b"error: message store unavailable (database or disk is full)"] * 5)
        r = self.api.post("/api/push", {"uid": "away", "data": "x"})
        self.assertEqual(r.error, (503, "store_unavailable"))
        self.assertEqual(r.headers["retry-after"], "5")
        self.assertEqual(r.json["error"]["message"], "message store unavailable (database or disk is full)")
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual(self.said("message store failing"), 1)
        self.assertEqual(self.store.problem, "database or disk is full")

        status, body = render(self.ready, DummyRequest([b""]))
        self.assertEqual((status, body["checks"]["store"]), (503, "failed: message store unavailable (database or disk is full)"))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

        self.faulty.fault = None
        status, body = render(self.ready, DummyRequest([b""]))
        self.assertEqual((status, body["checks"]["store"]), (200, "ok"))
        self.assertIsNone(self.store.problem)
        self.assertEqual(self.said("message store working again"), 1)
        self.line.dataReceived(b'{"uid":"away","n":2}\n')
        self.assertEqual(self.answers(), [b"queued"])

    def test_readsDoNotHideTheFault(self) -> None:
        """
        A read that succeeds while writes fail does not count as the store
        working again: no flapping between the two messages.
        """
        self.faulty.fault = FULL
        self.line.dataReceived(b'{"uid":"away"}\n{"uid":"never-seen"}\n{"uid":"away"}\n')
        self.assertEqual(
            self.answers(),
            [b"error: message store unavailable (database or disk is full)", b"fail"]
            + [b"error: message store unavailable (database or disk is full)"],
        )
        self.flushLoggedErrors(sqlite3.OperationalError)
        self.assertEqual((self.said("message store failing"), self.said("working again")), (1, 0))

    def test_shuttingDown(self) -> None:
        """
        Once the store is closing for shutdown, a push that needs it is
        answered "shutting down" (HTTP: 503 with Retry-After), without a
        traceback or a store-failure message.
        """
        closed = MonitoredStore(FaultyStore(MemoryMessageStore()))
        router = buildRouter(self.clock, closed, offline=OfflineLimits(10, 60))
        self.successResultOf(closed.inner.inner.markSeen({"away": self.clock.seconds()}))
        closed.close()
        closed.inner.fault = RuntimeError("the store is closed")
        line = LinePushFactory(router).buildProtocol(None)
        transport = StringTransport()
        line.makeConnection(transport)
        line.dataReceived(b'{"uid":"away"}\n')
        self.assertEqual(transport.value(), b"error: shutting down\n")
        r = Api(router).post("/api/push", {"uid": "away", "data": "x"})
        self.assertEqual((r.error, r.headers["retry-after"]), ((503, "shutting_down"), "5"))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.said("message store failing"), 0)
        self.assertEqual(r.json["error"]["message"], "the server is shutting down")
