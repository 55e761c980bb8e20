"""
The few counts the parts did not keep yet, taken by wrapping them in
the wiring (C{realtime.wiring}) instead of editing the hot paths: messages
from clients (around the routing strategy) and how long a backend's push
takes to be written (around the router the HTTP API and the line port push
through, on the one publish path: a synchronous answer is timed at once).

Everything else the metrics report is read from counters the parts already
keep (C{realtime.ops.metrics}).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from typing import Any, Callable, Iterable, Sequence, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import alsoProvides, implementer

from realtime.interfaces import IBatchPublisher, IPublisher, IPushFraming, IRoutingStrategy, ISession, ISessionRegistry
from realtime.push.batch import Outcome, oneByOne
from realtime.values import Envelope, PushResult, Target, ToAll, ToChannel, ToSessions, ToUids

#: upper bounds, in seconds, of the push latency histogram's buckets: from
#: a loopback push (tens of microseconds) to a broadcast to 100k sessions
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class LatencyHistogram:
    """
    Counts of observed durations per bucket, per label pair.

    Cumulative counts are computed at scrape time, so an observation costs
    one bisection and two additions.
    """

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        # labels -> [counts per bucket (+Inf last), sum]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float, count: int = 1) -> None:
        """
        Record C{count} durations of C{seconds} under C{labels}: a batch's
        pushes, which all took as long as their batch, in one call.
        """
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect_left(self.buckets, seconds)] += count
        series[1][0] += seconds * count

    def series(self) -> list[tuple[tuple[str, ...], list[tuple[str, int]], float]]:
        """
        Each label tuple with its cumulative C{(le, count)} buckets (the last
        is C{+Inf}) and its sum, as Prometheus wants them.
        """
        result = []
        for labels, (counts, total) in sorted(self._series.items()):
            cumulative, running = [], 0
            for bound, count in zip([*map(repr, self.buckets), "+Inf"], counts, strict=True):
                running += count
                cumulative.append((bound, running))
            result.append((labels, cumulative, total[0]))
        return result

    def count(self, labels: tuple[str, ...]) -> int:
        """
        How many durations were recorded under C{labels}.
        """
        series = self._series.get(labels)
        return sum(series[0]) if series else 0


def targetKind(envelope: Envelope) -> str:
    """
    The label of an envelope's target: C{uid}, C{channel}, C{broadcast} or
    C{session}.
    """
    return kindOf(envelope.target)


_KINDS: dict[type, str] = {ToUids: "uid", ToChannel: "channel", ToAll: "broadcast", ToSessions: "session"}


def kindOf(target: Target) -> str:
    """
    The label of a target (see L{targetKind}).
    """
    return _KINDS.get(type(target), "other")


@implementer(IBatchPublisher)
class InstrumentedPublisher:
    """
    The router as one backend entry point (C{source}: C{http}, C{line})
    sees it: every publish is timed from accepted to written (at once when
    the answer is synchronous; otherwise when the Deferred fires, once every
    frame is on its transport or queued for an offline uid), and C{stats}
    adds the server's counters to the router's.
    """

    def __init__(
        self,
        publisher: IPublisher,
        source: str,
        histogram: LatencyHistogram,
        reactor: IReactorTime,
        extraStats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.publisher = publisher
        self.source = source
        self.histogram = histogram
        self._seconds = reactor.seconds
        self._observe = histogram.observe
        #: the histogram's labels of each kind of target, made once
        self._labels = {kind: (source, label) for kind, label in _KINDS.items()}
        self.extraStats = extraStats

    def publish(self, envelope: Envelope) -> PushResult | Deferred[PushResult]:
        """
        Publish through the real publisher and time it.
        """
        seconds = self._seconds
        started = seconds()
        result = self.publisher.publish(envelope)
        labels = self._labels.get(type(envelope.target)) or (self.source, "other")
        # PushResult, not Deferred (an ABC, slower to check): the hot path
        if isinstance(result, PushResult):
            self._observe(labels, seconds() - started)
            return result
        return result.addBoth(self._observed, labels, started)

    def _observed(self, outcome: Any, labels: tuple[str, str], started: float) -> Any:
        # a method, not a closure made per push
        self._observe(labels, self._seconds() - started)
        return outcome

    def publishBatch(self, envelopes: Sequence[Envelope]) -> Deferred[list[Outcome]]:
        """
        Publish a batch through the real publisher (one by one if it has no
        batch path) and time it: each push took as long as its batch.
        """
        started = self._seconds()
        publisher = self.publisher
        if IBatchPublisher.providedBy(publisher):
            published = publisher.publishBatch(envelopes)
        else:
            published = oneByOne(publisher.publish, envelopes)
        return published.addBoth(self._observedBatch, envelopes, started)

    def _observedBatch(self, outcome: Any, envelopes: Sequence[Envelope], started: float) -> Any:
        took, observe, labelsOf = self._seconds() - started, self._observe, self._labels.get
        kinds = Counter([type(envelope.target) for envelope in envelopes])
        for kind, count in kinds.items():
            observe(labelsOf(kind) or (self.source, "other"), took, count)
        return outcome

    def connectionCount(self, uid: str) -> Deferred[int]:
        """
        As the real publisher answers.
        """
        return self.publisher.connectionCount(uid)

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        As the real publisher answers.
        """
        return self.publisher.presence(channel)

    def stats(self) -> Deferred[dict[str, Any]]:
        """
        The router's stats, then every server counter it does not give.
        """

        def extend(stats: dict[str, Any]) -> dict[str, Any]:
            extra = self.extraStats() if self.extraStats is not None else {}
            return {**extra, **stats}

        return self.publisher.stats().addCallback(extend)


@implementer(IRoutingStrategy)
class CountingStrategy:
    """
    A routing strategy that counts what clients send before the real one
    routes it.

    It provides C{IPushFraming} exactly when the wrapped strategy does.

    @ivar messages: messages routed (authenticated client messages).
    @ivar bytes: their payload bytes.
    """

    def __init__(self, strategy: IRoutingStrategy) -> None:
        self.strategy = strategy
        self.messages = 0
        self.bytes = 0
        if IPushFraming.providedBy(strategy):
            alsoProvides(self, IPushFraming)

    def route(self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry) -> Any:
        """
        Count, then let the real strategy decide.
        """
        self.messages += 1
        self.bytes += len(payload)
        return self.strategy.route(session, payload, isBinary, registry)

    def framePush(self, payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
        """
        The wrapped strategy's framing (only called when it has one).
        """
        return cast(IPushFraming, self.strategy).framePush(payload, isBinary)
