"""
A listening service that fails its start when its port cannot be bound.

Twisted's C{StreamServerEndpointService} logs a failure to listen and goes
on starting, unless its private C{_raiseSynchronously} is set; and the port
it bound is reachable only through its private C{_waitingForPort}.  Both
are used here only (C{realtime.websocket._autobahn.privates} checks them).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred


class StrictEndpointService(StreamServerEndpointService):
    """
    An endpoint service whose C{privilegedStartService} raises what
    C{listen} raised, so a server never runs without one of its ports.
    """

    _raiseSynchronously = True

    def whenListening(self) -> Deferred[Any]:
        """
        The Deferred of the port, once C{privilegedStartService} has run.
        """
        waiting: Deferred[Any] | None = self._waitingForPort
        if waiting is None:
            raise RuntimeError("not listening yet: privilegedStartService has not run")
        return waiting
