"""
Autobahn's Twisted adapter without the debug lines it formats on every event.

C{WebSocketAdapterProtocol.connectionMade}, C{dataReceived} and
C{connectionLost}, and the server's C{_connectionMade}/C{_connectionLost},
each call C{self.log.debug(..., func=hltype(...), peer=hlval(...))}.  The
logger drops debug messages, but the arguments are computed first:
C{hltype} inspects the method and colours its qualified name.  That is six
calls per connection and one per read, some 10% of the Python time of a
handshake (cProfile, 10,000 handshakes in-process), and one more formats
the protocol's options with C{pprint} on every connection.  L{QuietAdapter}
does the same work as those methods, in the same order, minus the log lines;
errors worth a log line (TLS failures) are still logged.
C{tests/test_websocket_handshake.py} checks that a connection ends up with every
attribute Autobahn's own methods give it, with the same values, so a new
Autobahn that sets more fails there and not in production.
"""

from __future__ import annotations

from collections import deque

from autobahn.twisted.util import create_transport_details
from autobahn.util import _is_tls_error, _maybe_tls_reason
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import Timings, TrafficStats, WebSocketProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure


class QuietAdapter:
    """
    A mixin placed before C{WebSocketServerProtocol} in a server protocol's
    bases.
    """

    def connectionMade(self) -> None:
        """
        C{WebSocketAdapterProtocol.connectionMade}: transport details, Nagle
        off, then the protocol's own set-up.
        """
        details = create_transport_details(self.transport, self.is_server)  # type: ignore[attr-defined]
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        self._transport_details = details
        self.peer = details.peer
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)  # type: ignore[attr-defined]
        except Exception:  # Unix sockets and the like have no Nagle to turn off
            pass
        self._connectionMade()

    # What WebSocketProtocol._connectionMade sets to the same value on every
    # connection, as class attributes: read the same, and an idle
    # connection's own dict holds only what it changed.
    _perMessageCompress = None
    trackedTimings = None
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    data = b""
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason = None
    wasServerConnectionDropTimeout = False
    wasOpenHandshakeTimeout = False
    wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode = None
    localCloseReason = None
    remoteCloseCode = None
    remoteCloseReason = None
    openHandshakeTimeoutCall = None
    closeHandshakeTimeoutCall = None
    autoPingTimeoutCall = None
    autoPingPending = None
    autoPingPendingCall = None
    autoPingPendingSeq = 0
    autoPingPendingSent = None

    def _connectionMade(self) -> None:
        """
        C{WebSocketServerProtocol._connectionMade}: the per-connection state
        of C{WebSocketProtocol._connectionMade} (the constants are the class
        attributes above; Autobahn's debug line pretty-prints the options
        on every connection), and the factory's count.
        """
        factory = self.factory  # type: ignore[attr-defined]
        for name in self.CONFIG_ATTRS:  # type: ignore[attr-defined]
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        if self.trackTimings:  # type: ignore[attr-defined]
            self.trackedTimings = Timings()
        self.trafficStats = TrafficStats()
        self.state = WebSocketProtocol.STATE_CONNECTING
        self.send_queue = deque()
        self.utf8validator = Utf8Validator()
        if self.openHandshakeTimeout > 0:  # type: ignore[attr-defined]
            self.openHandshakeTimeoutCall = factory._batched_timer.call_later(
                self.openHandshakeTimeout,  # type: ignore[attr-defined]
                self.onOpenHandshakeTimeout,  # type: ignore[attr-defined]
            )
        factory.countConnections += 1

    def dataReceived(self, data: bytes) -> None:
        """
        C{WebSocketAdapterProtocol.dataReceived}.
        """
        self._dataReceived(data)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        C{WebSocketAdapterProtocol.connectionLost}: a TLS failure is logged.
        """
        if _is_tls_error(reason.value):
            self.log.error(_maybe_tls_reason(reason.value))  # type: ignore[attr-defined]
        self._connectionLost(reason)

    def _connectionLost(self, reason: Failure) -> None:
        """
        C{WebSocketServerProtocol._connectionLost}.
        """
        WebSocketProtocol._connectionLost(self, reason)  # type: ignore[arg-type]
        self.factory.countConnections -= 1  # type: ignore[attr-defined]
        # Autobahn resolves is_closed with the protocol itself: a reference
        # cycle, so every closed connection (and its transport and socket
        # object) waited for a full collection, which the tuned collector
        # (realtime.ops.gctuning) runs only after millions of allocations:
        # tens of MB per few thousand reconnects.  Nothing waits on it now.
        self.__dict__.pop("is_closed", None)
