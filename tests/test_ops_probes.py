"""
Tests for L{realtime.ops.probes}: ``/healthz``, ``/readyz`` (with a store that
answers, one that never does, and one that fails), ``/metrics`` and
``/config.json``, rendered with Twisted's own request double.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.registry import CollectorRegistry
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from realtime.ops.probes import HealthResource, MetricsResource, PageConfigResource, ReadyResource
from realtime.store.memory import MemoryMessageStore
from tests.fakes import GatedStore, ManualBroker
from tests.support import render


class FailingStore(MemoryMessageStore):
    """
    A memory store whose reads fail, as a store whose disk went away does.
    """

    def wasSeen(self, uid: str, now: float) -> Any:
        return fail(OSError("disk I/O error"))


class ReadyTests(SynchronousTestCase):
    """
    L{ReadyResource} asks the broker and the store, in time.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.stopping = False

    def ready(self, store: Any) -> ReadyResource:
        return ReadyResource(self.clock, ManualBroker(), store, lambda: self.stopping, timeout=2.0)

    def test_ready(self) -> None:
        """
        Both answer: 200 and what was checked.
        """
        status, body = render(self.ready(MemoryMessageStore()), DummyRequest([b""]))
        self.assertEqual((status, body), (200, {"ready": True, "checks": {"broker": "ok", "store": "ok"}}))

    def test_storeTooSlow(self) -> None:
        """
        A store that does not answer within the timeout makes it 503, and
        concurrent probes share one store read.
        """
        store = GatedStore(MemoryMessageStore())
        resource = self.ready(store)
        first, second = DummyRequest([b""]), DummyRequest([b""])
        self.assertEqual(render(resource, first), (200, None))
        render(resource, second)
        self.assertEqual(store.waiting, 1)
        self.clock.advance(2.0)
        for request in (first, second):
            self.assertEqual(request.responseCode, 503)
            body = json.loads(b"".join(request.written))
            self.assertEqual(body["ready"], False)
            self.assertTrue(body["checks"]["store"].startswith("failed"), body)
            self.assertEqual(body["checks"]["broker"], "ok")
        self.flushLoggedErrors()

    def test_storeFails(self) -> None:
        """
        A failing store read makes it 503 with the reason.
        """
        status, body = render(self.ready(FailingStore()), DummyRequest([b""]))
        self.assertEqual((status, body["checks"]["store"]), (503, "failed: disk I/O error"))

    def test_brokerDisconnected(self) -> None:
        """
        A broker that has a problem (L{IBroker.problem}) makes it 503 with
        the broker's reason, and 200 again once it has none.
        """
        broker = ManualBroker()
        resource = ReadyResource(self.clock, broker, MemoryMessageStore(), lambda: self.stopping, timeout=2.0)
        broker.problem = "not connected to redis://10.0.0.5:6379"
        status, body = render(resource, DummyRequest([b""]))
        self.assertEqual((status, body["checks"]["broker"]), (503, "failed: not connected to redis://10.0.0.5:6379"))
        broker.problem = None
        status, body = render(resource, DummyRequest([b""]))
        self.assertEqual((status, body["checks"]["broker"]), (200, "ok"))

    def test_stopping(self) -> None:
        """
        While shutting down it is not ready, without asking anyone.
        """
        self.stopping = True
        status, body = render(self.ready(GatedStore(MemoryMessageStore())), DummyRequest([b""]))
        self.assertEqual((status, body), (503, {"ready": False, "checks": {"server": "stopping"}}))

    def test_clientGone(self) -> None:
        """
        A probe that disconnects before the answer gets nothing written.
        """
        store = GatedStore(MemoryMessageStore())
        request = DummyRequest([b""])
        render(self.ready(store), request)
        request.processingFailed(Exception("gone"))
        store.open()
        self.assertEqual(request.written, [])


class OtherResourcesTests(SynchronousTestCase):
    """
    The plain endpoints.
    """

    def test_health(self) -> None:
        """
        C{/healthz} is 200 whenever it answers.
        """
        self.assertEqual(render(HealthResource(), DummyRequest([b""])), (200, {"status": "ok"}))

    def test_metricsContentType(self) -> None:
        """
        C{/metrics} is the Prometheus text format.
        """
        request = DummyRequest([b""])
        body = MetricsResource(CollectorRegistry()).render(request)
        self.assertEqual(body, b"")
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain; version=0.0.4; charset=utf-8"]
        )

    def test_pageConfig(self) -> None:
        """
        C{/config.json} is what the describe function says, never cached.
        """
        request = DummyRequest([b""])
        self.assertEqual(render(PageConfigResource(lambda: {"routing": "uid"}), request), (200, {"routing": "uid"}))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])
