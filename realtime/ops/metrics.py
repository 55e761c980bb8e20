"""
The server's numbers: one snapshot for ``/api/stats`` and ``realtime-push
stats``, and a Prometheus collector for ``/metrics``.

Both read the counters the parts keep anyway (the registry's sizes, the
factory's auth failures and slow consumers, the router's offline queue, the
line port's and the HTTP API's own counters) at the moment they are asked,
so nothing in a hot path calls a metrics library, and the numbers cannot
drift from what the parts themselves believe.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime

from realtime import __version__
from realtime.interfaces import IBroker, IHistoryBroker
from realtime.ops.instrument import CountingStrategy, LatencyHistogram

#: distinct auth failure reasons reported; more are summed under "other", so
#: a plugin whose reasons carry values cannot grow the scrape without bound
MAX_REASONS = 50


class ReactorLag(Service):
    """
    How late the reactor runs a call it was asked to run C{interval}
    seconds later: how long something blocked it, as the clients felt it.

    @ivar last: the lateness of the latest tick, in seconds.
    """

    def __init__(self, reactor: IReactorTime, interval: float = 1.0, window: int = 60) -> None:
        self._reactor = reactor
        self._interval = interval
        self._due = 0.0
        self._call: Any = None
        self.last = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    def _schedule(self) -> None:
        self._due = self._reactor.seconds() + self._interval
        self._call = self._reactor.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        self.last = max(0.0, self._reactor.seconds() - self._due)
        self._recent.append(self.last)
        self._schedule()

    def worst(self) -> float:
        """
        The largest lateness of the last C{window} ticks.
        """
        return max(self._recent, default=0.0)

    def startService(self) -> None:
        """
        Start ticking.
        """
        Service.startService(self)
        self._schedule()

    def stopService(self) -> None:
        """
        Stop ticking.
        """
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()


class ServerCounters:
    """
    Reads every counter of one server, given every part at construction
    (C{realtime.wiring.buildCore}).

    @ivar line: the C{LinePushFactory}, if the line port is on.
    @ivar api: the C{ApiCounters} of the HTTP API, if it is on.
    @ivar lag: the L{ReactorLag} monitor, if running.
    """

    def __init__(
        self,
        *,
        authName: str,
        routingName: str,
        brokerName: str,
        broker: IBroker,
        router: Any,
        fanout: Any,
        factory: Any,
        strategy: CountingStrategy,
        latency: LatencyHistogram,
        line: Any = None,
        api: Any = None,
        lag: ReactorLag | None = None,
    ) -> None:
        self.authName = authName
        self.routingName = routingName
        self.brokerName = brokerName
        self.broker = broker
        self.router = router
        self.fanout = fanout
        self.factory = factory
        self.strategy = strategy
        self.latency = latency
        self.line = line
        self.api = api
        self.lag = lag

    def brokerUp(self) -> bool:
        """
        Whether the broker can deliver: it has no L{IBroker.problem} (the
        embedded one never has; one that talks to a server has while it
        cannot reach it).
        """
        return self.broker.problem is None

    def authFailures(self) -> dict[str, int]:
        """
        Refused authentications by reason, at most L{MAX_REASONS} of them.
        """
        failures = sorted(self.factory.authFailures.items(), key=lambda item: -item[1])
        top = dict(failures[:MAX_REASONS])
        rest = sum(count for _, count in failures[MAX_REASONS:])
        if rest:
            top["other"] = top.get("other", 0) + rest
        return top

    def messagesOut(self) -> int:
        """
        Frames written to sessions: fan-out deliveries and offline queues.
        """
        return int(self.fanout.delivered) + int(self.router.deliveredOffline)

    def snapshot(self) -> dict[str, Any]:
        """
        Everything, as plain JSON values, for ``/api/stats``.
        """
        registry = self.router.registry
        snapshot: dict[str, Any] = {
            "connections": len(registry),
            "uids": registry.uidCount(),
            "channels": registry.channelCount(),
            "sessionsOpened": self.factory.openedSessions,
            "auth": self.authName,
            "authFailures": self.authFailures(),
            "route": self.routingName,
            "messagesIn": self.strategy.messages,
            "messagesOut": self.messagesOut(),
            "slowConsumers": self.factory.slowConsumers,
            "broker": self.brokerName,
            "brokerUp": self.brokerUp(),
            "pendingDeliveries": self.fanout.pending,
            "offlineQueued": self.router.queuedPushes,
            "offlineRefused": self.router.refusedPushes,
            "offlineDelivered": self.router.deliveredOffline,
        }
        if self.line is not None:
            line = self.line
            snapshot["linePort"] = {
                "connections": line.connections,
                "pushes": line.pushes,
                "ok": line.delivered,
                "queued": line.queued,
                "fail": line.undelivered,
                "errors": line.errors,
            }
        if self.api is not None:
            snapshot["httpApi"] = {"requests": self.api.requests, "pushes": self.api.pushes, "errors": self.api.errors}
        if self.lag is not None:
            snapshot["reactorLag"] = round(self.lag.last, 6)
        return snapshot


class RealtimeCollector(Collector):
    """
    The Prometheus view of L{ServerCounters}, built at each scrape.
    """

    def __init__(self, counters: ServerCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        """
        Every metric, from the live counters.
        """
        c = self.counters
        registry = c.router.registry
        route = [c.routingName]
        info = GaugeMetricFamily(
            "realtime_info", "The server's version and plugins", labels=["version", "auth", "routing", "broker"]
        )
        info.add_metric([__version__, c.authName, c.routingName, c.brokerName], 1)
        yield info
        yield GaugeMetricFamily("realtime_connections", "Open, authenticated WebSocket sessions", value=len(registry))
        yield GaugeMetricFamily("realtime_uids", "Distinct uids with at least one session", value=registry.uidCount())
        yield GaugeMetricFamily(
            "realtime_channels", "Channels with at least one subscriber", value=registry.channelCount()
        )
        yield CounterMetricFamily(
            "realtime_sessions_opened", "Sessions authenticated since start", value=c.factory.openedSessions
        )
        inbound = CounterMetricFamily("realtime_messages_in", "Messages received from clients", labels=["route"])
        inbound.add_metric(route, c.strategy.messages)
        yield inbound
        inboundBytes = CounterMetricFamily(
            "realtime_messages_in_bytes", "Payload bytes received from clients", labels=["route"]
        )
        inboundBytes.add_metric(route, c.strategy.bytes)
        yield inboundBytes
        outbound = CounterMetricFamily(
            "realtime_messages_out", "Frames written to sessions (fan-out and offline queues)", labels=["route"]
        )
        outbound.add_metric(route, c.messagesOut())
        yield outbound
        failures = CounterMetricFamily(
            "realtime_auth_failures", "Refused authentications", labels=["auth", "reason"]
        )
        for reason, count in sorted(c.authFailures().items()):
            failures.add_metric([c.authName, reason], count)
        yield failures
        yield CounterMetricFamily(
            "realtime_slow_consumer_drops", "Sessions dropped for not reading", value=c.factory.slowConsumers
        )
        broker = GaugeMetricFamily("realtime_broker_up", "1 if the broker can deliver", labels=["broker"])
        broker.add_metric([c.brokerName], 1 if c.brokerUp() else 0)
        yield broker
        history = IHistoryBroker(c.broker, None)
        if history is not None:
            yield CounterMetricFamily(
                "realtime_broker_recovered_messages",
                "Channel messages pub/sub lost on their way to this node, delivered from the history",
                value=history.recovered,
            )
        yield GaugeMetricFamily(
            "realtime_pending_deliveries", "Fan-outs waiting for a later reactor turn", value=c.fanout.pending
        )
        yield from self._latency()
        yield from self._offline()
        yield from self._backends()
        if c.lag is not None:
            yield GaugeMetricFamily(
                "realtime_reactor_lag_seconds",
                "Worst delay of a 1 s timer over the last minute: how long the reactor was blocked",
                value=c.lag.worst(),
            )

    def _latency(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "realtime_push_latency_seconds",
            "From a backend push accepted to its frames written (or queued offline)",
            labels=["source", "target"],
        )
        for labels, buckets, total in self.counters.latency.series():
            histogram.add_metric(list(labels), buckets, total)
        yield histogram

    def _offline(self) -> Iterator[Metric]:
        router = self.counters.router
        yield CounterMetricFamily(
            "realtime_offline_queued", "Pushes kept for a uid without sessions", value=router.queuedPushes
        )
        yield CounterMetricFamily(
            "realtime_offline_refused", "Pushes refused because the uid's queue was full", value=router.refusedPushes
        )
        yield CounterMetricFamily(
            "realtime_offline_delivered", "Queued pushes delivered when their uid connected", value=router.deliveredOffline
        )
        store = router.store
        if store is not None and hasattr(store, "problem"):
            yield GaugeMetricFamily(
                "realtime_store_up", "1 while the message store works, 0 from a failure until a write succeeds",
                value=0 if store.problem else 1,
            )
            yield CounterMetricFamily("realtime_store_failures", "Message store operations that failed", value=store.failures)

    def _backends(self) -> Iterator[Metric]:
        line, api = self.counters.line, self.counters.api
        if line is not None:
            yield GaugeMetricFamily("realtime_line_connections", "Open line port connections", value=line.connections)
            answers = CounterMetricFamily("realtime_line_requests", "Line port requests by answer", labels=["answer"])
            for answer, count in (
                ("ok", line.delivered),
                ("queued", line.queued),
                ("fail", line.undelivered),
                ("error", line.errors),
            ):
                answers.add_metric([answer], count)
            yield answers
        if api is not None:
            yield CounterMetricFamily("realtime_api_requests", "HTTP API requests", value=api.requests)
            yield CounterMetricFamily("realtime_api_pushes", "HTTP API pushes, broadcasts and publishes", value=api.pushes)
            yield CounterMetricFamily("realtime_api_errors", "HTTP API requests answered with an error", value=api.errors)


def buildMetricsRegistry(counters: ServerCounters, processMetrics: bool = True) -> CollectorRegistry:
    """
    A registry of this server's own (not the process-global one, so tests
    can run several servers in one process), with the standard process
    metrics (memory, CPU, open files) beside ours.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RealtimeCollector(counters))
    if processMetrics:
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry
