"""
Handing a live connection from one protocol to another.

Twisted has no public way to change the protocol a connected transport
delivers to: a TCP transport keeps it as C{protocol}, a wrapper (TLS) as
C{wrappedProtocol}.  The shared port reads the first request head, then
hands the connection to the WebSocket or the web side this way, so the
head is parsed once and no twisted.web objects stay on a WebSocket.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.protocols.policies import ProtocolWrapper


def handOver(transport: Any, protocol: IProtocol, data: bytes) -> None:
    """
    Make C{protocol} the one C{transport} delivers to, connect it, and give
    it C{data} (what was read so far).
    """
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
