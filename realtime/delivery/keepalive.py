"""
Keepalive pings for every session from one timer.

Autobahn's automatic pings hold a timer per connection (and re-arm it as
traffic comes and goes).  Here one C{LoopingCall} walks the sessions in
slices, so each is looked at about once per interval: a session silent for
an interval is pinged, one silent for two intervals (it did not answer the
ping either) is dropped.  Any data from the peer, the pong included, counts
as being alive.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from realtime.core.registry import SessionRegistry

#: seconds between two slices of the walk
STEP = 1.0


class Pingable(Protocol):
    """
    What the keepalive needs of a session.
    """

    def keepalive(self, now: float, interval: float) -> None: ...


class Keepalive(Service):
    """
    Walks the registry's sessions, a slice per L{STEP}, calling
    C{session.keepalive(now, interval)}.
    """

    def __init__(self, reactor: IReactorTime, registry: SessionRegistry, interval: float) -> None:
        self._reactor = reactor
        self._registry = registry
        self.interval = interval
        self._position = 0
        self._loop = LoopingCall(self.step)
        self._loop.clock = reactor

    def startService(self) -> None:
        """
        Start walking (not at all with an interval of 0).
        """
        Service.startService(self)
        if self.interval > 0:
            self._loop.start(STEP, now=False)

    def stopService(self) -> Any:
        """
        Stop walking.
        """
        Service.stopService(self)
        if self._loop.running:
            self._loop.stop()

    def step(self) -> None:
        """
        Look at the next slice: every session is reached once per interval.
        """
        sessions = self._registry.allSessions()
        total = len(sessions)
        if not total:
            return
        count = min(total, math.ceil(total * STEP / self.interval))
        now = self._reactor.seconds()
        start = self._position % total
        for i in range(start, start + count):
            session: Any = sessions[i % total]
            session.keepalive(now, self.interval)
        self._position = (start + count) % total
