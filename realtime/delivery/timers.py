"""
One shared timer for many coarse timeouts.

A server holding 100,000 connections should not hold 100,000 C{DelayedCall}s
for timeouts that only need half-second precision (the first-message auth
deadline, the slow-consumer grace).  L{TimeoutWheel} puts deadlines in
buckets and keeps a single C{DelayedCall}, for the earliest bucket, on the
reactor.
"""

from __future__ import annotations

import math
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class Timeout:
    """
    A scheduled call that can be cancelled; cancelling twice is harmless.
    """

    __slots__ = ("_wheel", "_bucket", "_call")

    def __init__(self, wheel: TimeoutWheel, bucket: int, call: Callable[[], object]) -> None:
        self._wheel = wheel
        self._bucket = bucket
        self._call: Callable[[], object] | None = call

    @property
    def active(self) -> bool:
        """
        C{True} until it fires or is cancelled.
        """
        return self._call is not None

    def cancel(self) -> None:
        """
        Forget this timeout.
        """
        if self._call is not None:
            self._call = None
            self._wheel._forget(self)


class TimeoutWheel:
    """
    Deadlines rounded up to C{resolution} seconds, fired in bucket order.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, resolution: float = 0.25) -> None:
        self.reactor = reactor
        self._reactor = reactor
        self._resolution = resolution
        self._buckets: dict[int, set[Timeout]] = {}
        self._pending: IDelayedCall | None = None
        self._pendingBucket: int | None = None

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def schedule(self, delay: float, call: Callable[[], object]) -> Timeout:
        """
        Call C{call} no sooner than C{delay} seconds from now, and at most
        C{resolution} seconds later than that.
        """
        bucket = math.ceil((self._reactor.seconds() + delay) / self._resolution)
        timeout = Timeout(self, bucket, call)
        members = self._buckets.get(bucket)
        if members is None:
            self._buckets[bucket] = {timeout}
            if self._pendingBucket is None or bucket < self._pendingBucket:
                self._arm(bucket)
        else:
            members.add(timeout)
        return timeout

    def _forget(self, timeout: Timeout) -> None:
        members = self._buckets.get(timeout._bucket)
        if members is not None:
            members.discard(timeout)
            if not members:
                del self._buckets[timeout._bucket]

    def _arm(self, bucket: int) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        delay = max(0.0, bucket * self._resolution - self._reactor.seconds())
        self._pendingBucket = bucket
        self._pending = self._reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._pendingBucket = None
        now = math.floor(self._reactor.seconds() / self._resolution + 1e-9)
        for bucket in sorted(b for b in self._buckets if b <= now):
            for timeout in self._buckets.pop(bucket):
                call, timeout._call = timeout._call, None
                if call is None:
                    continue
                try:
                    call()
                except Exception:
                    self.log.failure("timeout callback {call!r} failed", call=call)
        if self._buckets:
            self._arm(min(self._buckets))

    def stop(self) -> None:
        """
        Cancel everything (at shutdown).
        """
        for members in self._buckets.values():
            for timeout in members:
                timeout._call = None
        self._buckets.clear()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        self._pendingBucket = None
