"""
One port for WebSocket and web: the first request of a connection decides.

A connection whose first request asks for a WebSocket upgrade is handed to
Autobahn with the bytes already read, so the handshake is parsed once and no
twisted.web channel or request objects stay attached to a long-lived socket.
Anything else is handed to the twisted.web C{Site} (the demo page,
``realtime.js``, metrics), which also mounts Autobahn's
C{WebSocketResource} at ``/ws`` for upgrades that arrive on a reused
keep-alive connection.

Over TLS, the L{SharedPortFactory} is what C{TLSMemoryBIOFactory} asks which
protocols ALPN may choose: it offers C{http/1.1} (both sides of the port
speak it; a WebSocket starts as an HTTP/1.1 request), without which
OpenSSL fails every handshake that offers ALPN, i.e. every browser's.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from realtime.delivery.timers import Timeout, TimeoutWheel
from realtime.web.http11 import ALPN_PROTOCOLS, DEFAULT_HEAD_TIMEOUT
from realtime.websocket._autobahn.transports import handOver

#: an HTTP request head larger than this is not a WebSocket handshake we
#: accept; twisted.web answers it (431/400)
MAX_HEAD = 16 * 1024


def isUpgradeRequest(head: bytes) -> bool:
    """
    Whether an HTTP request head asks to upgrade to WebSocket.
    """
    lower = head.lower()
    # the common spelling first: one search instead of a loop over the lines
    at = lower.find(b"\r\nupgrade:")
    if at >= 0:
        stop = lower.find(b"\r\n", at + 10)
        return b"websocket" in lower[at + 10 : stop if stop >= 0 else len(lower)]
    if b"upgrade" not in lower:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"upgrade":
            return b"websocket" in value.lower()
    return False


class SharedPortProtocol(Protocol):
    """
    Reads until the end of the first request head, then steps aside.
    """

    #: TCP or TLS (Twisted types it as an optional C{ITransport}, which has
    #: no C{abortConnection})
    transport: Any

    def __init__(self, port: SharedPortFactory, addr: IAddress) -> None:
        self._port = port
        self._addr = addr
        self._buffer = b""
        self._timeout: Timeout | None = None

    def connectionMade(self) -> None:
        """
        A client that never finishes its request head is dropped.
        """
        self._timeout = self._port.wheel.schedule(self._port.headTimeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timeout = None
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        Buffer until the head is complete, then hand over.
        """
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0 and len(buffer) <= MAX_HEAD:
            self._buffer = buffer
            return
        self._buffer = b""
        if end >= 0 and isUpgradeRequest(buffer[:end]):
            target = self._port.websocket
        else:
            target = self._port.web
        self._handOver(target.buildProtocol(self._addr), buffer)

    def _handOver(self, protocol: IProtocol | None, data: bytes) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        transport = self.transport
        if protocol is None:
            transport.loseConnection()
            return
        handOver(transport, protocol, data)

    def connectionLost(self, reason: object = None) -> None:
        """
        Gone before handing over.
        """
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None


@implementer(IProtocolNegotiationFactory)
class SharedPortFactory(Factory):
    """
    The factory listening on ``--port``.
    """

    noisy = False

    def __init__(
        self,
        websocket: IProtocolFactory,
        web: IProtocolFactory,
        wheel: TimeoutWheel,
        headTimeout: float = DEFAULT_HEAD_TIMEOUT,
    ) -> None:
        self.websocket = websocket
        self.web = web
        self.wheel = wheel
        self.headTimeout = headTimeout

    def buildProtocol(self, addr: IAddress | None) -> SharedPortProtocol:
        """
        A sniffer for the connection.
        """
        # Twisted's listening ports always give one (Factory's signature
        # allows None for other callers)
        return SharedPortProtocol(self, cast(IAddress, addr))

    def acceptableProtocols(self) -> list[bytes]:
        """
        What ALPN may choose: HTTP/1.1, for the web and the WebSocket side.
        """
        return list(ALPN_PROTOCOLS)

    def doStart(self) -> None:
        """
        Start the factories we hand connections to.
        """
        super().doStart()
        self.websocket.doStart()
        self.web.doStart()

    def doStop(self) -> None:
        """
        And stop them.
        """
        self.websocket.doStop()
        self.web.doStop()
        super().doStop()
