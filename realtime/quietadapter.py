"""
Autobahn's Twisted adapter without the debug lines it formats on every event.

C{WebSocketAdapterProtocol.connectionMade}, C{dataReceived} and
C{connectionLost}, and the server's C{_connectionMade}/C{_connectionLost},
each call C{self.log.debug(..., func=hltype(...), peer=hlval(...))}.  The
logger drops debug messages, but the arguments are computed first:
C{hltype} inspects the method and colours its qualified name.  That is six
calls per connection and one per read, some 10% of the Python time of a
handshake (cProfile, 10,000 handshakes in-process).  L{QuietAdapter} does
the same work as those methods, in the same order, minus the log lines;
errors worth a log line (TLS failures) are still logged.
"""

from __future__ import annotations

from autobahn.twisted.util import create_transport_details
from autobahn.util import _is_tls_error, _maybe_tls_reason
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import WebSocketProtocol
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

    def _connectionMade(self) -> None:
        """
        C{WebSocketServerProtocol._connectionMade}.
        """
        WebSocketProtocol._connectionMade(self)  # type: ignore[arg-type]
        self.factory.countConnections += 1  # type: ignore[attr-defined]

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
