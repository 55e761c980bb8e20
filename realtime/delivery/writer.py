"""
One write per connection per reactor turn, sent at once when it can be.

Twisted's C{transport.write} buffers and asks epoll to say when the socket
is writable; the next reactor turn sends and, the buffer empty, asks epoll
to stop watching.  For a push server that pattern costs two C{epoll_ctl}
calls, one wake-up and one dispatch per connection per message: measured
with py-spy, some 40% of a 10,000-connection broadcast (bench/README.rst).

L{TurnWriter} collects what is written to each connection during a reactor
turn (frames of any number of pushes, replies, pongs, close frames: all of
them, so their order is kept), and at the end of the turn joins them and
sends them with one C{send()} directly, as libuv's C{uv_try_write} does.
Only what the kernel does not take goes through C{transport.write}, which
then buffers, watches for writability and pauses producers exactly as
before; while anything is buffered there, later data is appended behind it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet import abstract, tcp
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper

from realtime.websocket._autobahn.privates import heldBytes, holdsNothing


class Writable(Protocol):
    """
    What L{TurnWriter} flushes: a connection with an outgoing list.
    """

    _outgoing: list[bytes] | None

    def flushOutgoing(self) -> None: ...


def directSend(transport: Any) -> Callable[[bytes], int] | None:
    """
    The socket's C{send} if C{transport} is plain TCP and Twisted holds
    nothing unsent for it (so sending directly keeps the order), else
    C{None}.
    """
    if (
        type(transport) is tcp.Server
        and holdsNothing(transport)
        and transport.connected
        and not transport.disconnecting
    ):
        return transport.socket.send
    return None


def unsentBytes(transport: Any) -> int | None:
    """
    How many bytes Twisted holds unsent for C{transport}: a TCP connection,
    or TLS (any L{ProtocolWrapper}) over one, whose held bytes are those of
    the TCP connection under it; C{None} for a transport that cannot tell.

    Between two flushes this only shrinks, so with what a session queued
    since the last flush it bounds what the connection costs us.
    """
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    if isinstance(transport, abstract.FileDescriptor):
        return heldBytes(transport)
    return None


def sendNow(
    transport: Any, chunks: list[bytes], send: Callable[[bytes], int] | None = None
) -> Callable[[bytes], int] | None:
    """
    Send C{chunks}, joined, on C{transport}: straight to the socket if
    Twisted holds nothing unsent for it, the rest (or all, for transports
    that are not plain TCP) through C{transport.write}.

    What tcp.Connection.writeSomeData does, minus its per-call wrappers (the
    memoryview slice, untilConcludes): this runs once per connection per
    turn.

    @param send: the socket's C{send} this function returned last time for
        C{transport}, to skip asking the transport again (a push then
        touches only the connection and its socket).
    @return: the C{send} used, if everything went out directly; C{None} if
        Twisted now holds some of it (ask again next time).
    """
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if send is None:
        send = directSend(transport)
    if send is not None:
        try:
            sent = send(data)
        except OSError:
            # EINTR/EAGAIN/ENOBUFS, or the connection failing: Twisted's own
            # write pass sends it, or finds the failure and closes in order
            sent = 0
        if sent == len(data):
            return send
        data = data[sent:]
    transport.write(data)
    return None


class TurnWriter:
    """
    Flushes every connection written to during a reactor turn, once, at its
    end (C{callLater(0)} runs before the reactor next waits for I/O).
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._dirty: list[Writable] = []
        self._scheduled = False
        self.flushes = 0

    def write(self, connection: Writable, data: bytes) -> None:
        """
        Queue C{data} for C{connection} until the end of this turn.
        """
        outgoing = connection._outgoing
        if outgoing is None:
            connection._outgoing = [data]
            self._dirty.append(connection)
            if not self._scheduled:
                self._scheduled = True
                self._reactor.callLater(0, self.flush)
        else:
            outgoing.append(data)

    def flush(self) -> None:
        """
        Send what every dirty connection has queued.
        """
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        self.flushes += 1
        for connection in dirty:
            connection.flushOutgoing()
