"""
Tests for L{realtime.ops.instrument} and L{realtime.ops.metrics}: the counts the
wrappers take, and the scrape built from the live counters of real parts
(router, registry, fan-out, factory) driven by hand.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides
from zope.interface.verify import verifyObject

from realtime.api.lineproto import LinePushFactory
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.delivery.fanout import Frame
from realtime.interfaces import IBatchPublisher, IHistoryBroker, IPublisher, IPushFraming, IRoutingStrategy
from realtime.ops.instrument import CountingStrategy, InstrumentedPublisher, LatencyHistogram, targetKind
from realtime.ops.metrics import MAX_REASONS, ReactorLag, ServerCounters, buildMetricsRegistry
from realtime.routing.channels import ChannelsStrategy
from realtime.routing.chat import ChatStrategy
from realtime.store.health import MonitoredStore
from realtime.store.memory import MemoryMessageStore
from realtime.values import Envelope, OfflineLimits, PushResult, ToAll, ToChannel, ToSessions, ToUids
from tests.fakes import FakeSession, ManualBatchPublisher, ManualBroker
from tests.support import buildFactory, buildRouter


class LatencyHistogramTests(SynchronousTestCase):
    """
    L{LatencyHistogram} counts per bucket and reports them cumulatively.
    """

    def test_cumulative(self) -> None:
        """
        Each observation lands in the first bucket whose bound is not below
        it; the series are cumulative, end in C{+Inf}, and carry the sum.
        """
        h = LatencyHistogram([0.1, 1.0])
        for seconds in (0.05, 0.1, 0.5, 3.0):
            h.observe(("http", "uid"), seconds)
        h.observe(("line", "uid"), 0.2)
        [(labels, buckets, total), other] = h.series()
        self.assertEqual(labels, ("http", "uid"))
        self.assertEqual(buckets, [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertAlmostEqual(total, 3.65)
        self.assertEqual(other[1], [("0.1", 0), ("1.0", 1), ("+Inf", 1)])
        self.assertEqual((h.count(("http", "uid")), h.count(("nope",))), (4, 0))


class InstrumentedPublisherTests(SynchronousTestCase):
    """
    L{InstrumentedPublisher} times each publish until it is answered: at
    once when the answer is synchronous, when its Deferred fires otherwise.
    """

    def test_timesUntilWritten(self) -> None:
        """
        The time from publish to the broker's answer is observed under the
        source and the target kind; the answer passes through unchanged.
        """
        clock, inner, h = Clock(), ManualBroker(), LatencyHistogram()
        broker = InstrumentedPublisher(inner, "line", h, clock)
        self.assertTrue(verifyObject(IPublisher, broker))
        d = broker.publish(Envelope(ToUids(("u1",)), b"x"))
        clock.advance(0.003)
        self.assertEqual(h.count(("line", "uid")), 0)
        inner.published[0][1].callback(PushResult(1, {"u1": 1}))
        self.assertEqual(self.successResultOf(d), PushResult(1, {"u1": 1}))
        [(_, buckets, total)] = h.series()
        self.assertAlmostEqual(total, 0.003)
        self.assertEqual(dict(buckets)["0.0025"], 0)
        self.assertEqual(dict(buckets)["0.005"], 1)

    def test_failuresTimedToo(self) -> None:
        """
        A failed publish is observed as well, and still fails.
        """
        clock, inner, h = Clock(), ManualBroker(), LatencyHistogram()
        d = InstrumentedPublisher(inner, "http", h, clock).publish(Envelope(ToAll(), b"x"))
        inner.published[0][1].errback(RuntimeError("down"))
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(h.count(("http", "broadcast")), 1)

    def test_batchTimed(self) -> None:
        """
        A batch is timed until it is answered, each push under its own
        target kind; a publisher without a batch path gets it one push at
        a time.
        """
        clock, inner, h = Clock(), ManualBatchPublisher(), LatencyHistogram()
        publisher = InstrumentedPublisher(inner, "line", h, clock)
        self.assertTrue(verifyObject(IBatchPublisher, publisher))
        d = publisher.publishBatch(
            [Envelope(ToUids(("u1",)), b"x"), Envelope(ToAll(), b"y"), Envelope(ToUids(("u3",)), b"w")]
        )
        clock.advance(0.003)
        inner.batches[0][1].callback([PushResult(1), PushResult(2), PushResult(1)])
        self.assertEqual(self.successResultOf(d), [PushResult(1), PushResult(2), PushResult(1)])
        self.assertEqual((h.count(("line", "uid")), h.count(("line", "broadcast"))), (2, 1))
        series = {labels: (dict(buckets), total) for labels, buckets, total in h.series()}
        self.assertEqual(series[("line", "uid")][0]["0.005"], 2)
        self.assertAlmostEqual(series[("line", "uid")][1], 0.006)
        self.assertAlmostEqual(series[("line", "broadcast")][1], 0.003)
        plain = ManualBroker()
        d = InstrumentedPublisher(plain, "line", h, clock).publishBatch([Envelope(ToUids(("u2",)), b"z")])
        plain.published[0][1].callback(PushResult(0))
        self.assertEqual(self.successResultOf(d), [PushResult(0)])
        self.assertEqual(h.count(("line", "uid")), 3)

    def test_statsExtended(self) -> None:
        """
        C{stats} adds the extra counters without overriding the broker's.
        """
        broker = InstrumentedPublisher(ManualBroker(), "http", LatencyHistogram(), Clock(), lambda: {"a": 1})
        self.assertEqual(self.successResultOf(broker.stats()), {"a": 1})

    def test_targetKinds(self) -> None:
        """
        Each target has its label.
        """
        kinds = [targetKind(Envelope(t, b"")) for t in (ToUids(("u",)), ToChannel("c"), ToAll(), ToSessions(("s",)))]
        self.assertEqual(kinds, ["uid", "channel", "broadcast", "session"])


class CountingStrategyTests(SynchronousTestCase):
    """
    L{CountingStrategy} counts and delegates.
    """

    def test_counts(self) -> None:
        """
        Every routed message and its bytes are counted; the real strategy's
        answer is returned.
        """
        strategy = CountingStrategy(ChatStrategy())
        self.assertTrue(verifyObject(IRoutingStrategy, strategy))
        self.assertFalse(IPushFraming.providedBy(strategy))
        factory = buildFactory(AnonymousAuthenticator(), strategy, Clock())
        sender = FakeSession("a")
        factory.registry.add(sender)
        [action] = strategy.route(sender, b"hello", False, factory.registry)
        self.assertEqual(action.payload, b"hello")
        strategy.route(sender, b"!", False, factory.registry)
        self.assertEqual((strategy.messages, strategy.bytes), (2, 6))

    def test_framing(self) -> None:
        """
        It frames pushes exactly when the wrapped strategy does, and the same.
        """
        channels = ChannelsStrategy(buildRouter(Clock(), offline=None).channels)
        strategy = CountingStrategy(channels)
        self.assertTrue(IPushFraming.providedBy(strategy))
        self.assertEqual(strategy.framePush(b"hi", False), channels.framePush(b"hi", False))


class CollectorTests(SynchronousTestCase):
    """
    The scrape reads the live counters of real parts.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.strategy = CountingStrategy(ChatStrategy())
        router = buildRouter(self.clock, MemoryMessageStore(), offline=OfflineLimits(10, 60))
        self.factory = buildFactory(AnonymousAuthenticator(), self.strategy, self.clock, router=router)
        self.router = self.factory.router
        self.latency = LatencyHistogram()
        self.counters = ServerCounters(
            authName="anonymous",
            routingName="chat",
            brokerName="memory",
            broker=self.router.broker,
            router=self.router,
            fanout=self.factory.fanout,
            factory=self.factory,
            strategy=self.strategy,
            latency=self.latency,
        )
        self.registry = buildMetricsRegistry(self.counters, processMetrics=False)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(self.registry).decode("utf-8")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def test_liveCounters(self) -> None:
        """
        Sessions, deliveries, auth failures, slow consumers, offline
        counters, line port and API counters are scraped as they are now.
        """
        sessions = [FakeSession(uid) for uid in ("a", "a", "b")]
        for s in sessions:
            self.router.sessionOpened(s)
            self.factory.openedSessions += 1
        self.factory.fanout.deliver(sessions, Frame(b"x"))
        self.strategy.route(sessions[0], b"hey", False, self.router.registry)
        self.factory.countAuthFailure("bad signature")
        self.factory.countAuthFailure("bad signature")
        self.factory.countSlowConsumer()
        self.router.offline.queued, self.router.offline.delivered = 4, 2
        line = LinePushFactory(ManualBroker())
        line.pushes, line.delivered, line.undelivered, line.connections = 3, 2, 1, 1
        self.counters.line = line
        self.latency.observe(("http", "uid"), 0.001)
        m = self.scrape()
        self.assertEqual(m[("realtime_connections", ())], 3)
        self.assertEqual(m[("realtime_uids", ())], 2)
        self.assertEqual(m[("realtime_sessions_opened_total", ())], 3)
        self.assertEqual(m[("realtime_messages_in_total", (("route", "chat"),))], 1)
        self.assertEqual(m[("realtime_messages_out_total", (("route", "chat"),))], 3 + 2)
        self.assertEqual(m[("realtime_auth_failures_total", (("auth", "anonymous"), ("reason", "bad signature")))], 2)
        self.assertEqual(m[("realtime_slow_consumer_drops_total", ())], 1)
        self.assertEqual(m[("realtime_offline_queued_total", ())], 4)
        self.assertEqual(m[("realtime_line_requests_total", (("answer", "ok"),))], 2)
        self.assertEqual(m[("realtime_line_connections", ())], 1)
        self.assertEqual(m[("realtime_push_latency_seconds_count", (("source", "http"), ("target", "uid")))], 1)
        self.assertEqual(m[("realtime_broker_up", (("broker", "memory"),))], 1)
        self.assertNotIn(("realtime_api_requests_total", ()), m)
        snapshot = self.counters.snapshot()
        self.assertEqual((snapshot["messagesOut"], snapshot["linePort"]["fail"]), (5, 1))

    def test_reasonsCapped(self) -> None:
        """
        More distinct reasons than L{MAX_REASONS} are summed as C{other}, so
        a plugin putting values in its reasons cannot blow up the scrape.
        """
        for n in range(MAX_REASONS + 10):
            for _ in range(1 + (n < 5)):
                self.factory.countAuthFailure(f"reason {n}")
        failures = self.counters.authFailures()
        self.assertEqual(len(failures), MAX_REASONS + 1)
        self.assertEqual(failures["reason 0"], 2)
        self.assertEqual(sum(failures.values()), MAX_REASONS + 10 + 5)

    def test_brokerDown(self) -> None:
        """
        A broker that has a problem (L{IBroker.problem}) is scraped as
        down, and as up again once it has none.
        """
        self.router.broker.problem = "connection refused"  # type: ignore[misc]
        self.assertEqual(self.scrape()[("realtime_broker_up", (("broker", "memory"),))], 0)
        self.assertFalse(self.counters.snapshot()["brokerUp"])
        self.router.broker.problem = None  # type: ignore[misc]
        self.assertEqual(self.scrape()[("realtime_broker_up", (("broker", "memory"),))], 1)

    def test_recoveredMessages(self) -> None:
        """
        A broker that keeps channel history (L{IHistoryBroker}: the Redis
        broker on the Redis store, tested in tests/redis) has the messages
        it recovered from the history scraped; another has no such counter.
        """
        self.assertNotIn(("realtime_broker_recovered_messages_total", ()), self.scrape())
        broker = self.router.broker
        alsoProvides(broker, IHistoryBroker)
        broker.recovered = 3  # type: ignore[attr-defined]
        self.assertEqual(self.scrape()[("realtime_broker_recovered_messages_total", ())], 3)

    def test_storeDown(self) -> None:
        """
        A watched store is scraped as up, down while it has a problem, and
        with its failures counted.
        """
        store = self.router.store = MonitoredStore(MemoryMessageStore())
        self.assertEqual(self.scrape()[("realtime_store_up", ())], 1)
        store.problem, store.failures = "database or disk is full", 3
        m = self.scrape()
        self.assertEqual((m[("realtime_store_up", ())], m[("realtime_store_failures_total", ())]), (0, 3))



class ReactorLagTests(SynchronousTestCase):
    """
    L{ReactorLag} measures how late its timer runs.
    """

    def test_lag(self) -> None:
        """
        On time: no lag; a blocked reactor (the clock jumps past a tick)
        shows as the lateness, the worst of the window.
        """
        clock = Clock()
        lag = ReactorLag(clock, interval=1.0, window=3)
        lag.startService()
        self.addCleanup(lag.stopService)
        clock.advance(1.0)
        self.assertEqual((lag.last, lag.worst()), (0.0, 0.0))
        clock.advance(1.5)
        self.assertEqual(lag.last, 0.5)
        clock.pump([1.0, 1.0])
        self.assertEqual(lag.worst(), 0.5)
        clock.advance(1.0)
        self.assertEqual(lag.worst(), 0.0, "the window forgets old lateness")



class InstrumentedSynchronousTests(SynchronousTestCase):
    """
    The instrumented publisher keeps the router's synchronous answer, and
    times it: one path, counted whichever way it is answered.
    """

    def test_synchronousTimed(self) -> None:
        """
        A push the router answers at once is answered at once through the
        wrapper too (no Deferred), and counted in the histogram; a push
        answered later is counted when it is answered.
        """
        clock = Clock()
        router = buildRouter(clock, None, offline=None)
        session = FakeSession("a")
        router.sessionOpened(session)
        latency = LatencyHistogram()
        publisher = InstrumentedPublisher(router, "line", latency, clock)
        self.assertEqual(publisher.publish(Envelope(ToUids(("a",)), b"x")), PushResult(1, {"a": 1}))
        self.assertEqual(session.texts, ["x"])
        self.assertEqual(latency.count(("line", "uid")), 1)
        manual = ManualBroker()
        later = InstrumentedPublisher(manual, "line", latency, clock).publish(Envelope(ToUids(("a",)), b"y"))
        self.assertEqual(latency.count(("line", "uid")), 1)
        manual.published[0][1].callback(PushResult(0, {"a": 0}))
        self.assertEqual(self.successResultOf(later), PushResult(0, {"a": 0}))
        self.assertEqual(latency.count(("line", "uid")), 2)
