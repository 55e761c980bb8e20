"""
The HTTP/1.1 every port of the server speaks, hardened for the open
internet.

twisted.web's channel times a connection out only when it is idle, and
every byte received restarts that clock, so a client sending a request head
one byte every few seconds holds its connection forever (slowloris); a head
larger than the limits is dropped without an answer (one long line) or
answered 400 (many lines).  L{HeadDeadlineChannel} gives every request head
of a connection, the first and each keep-alive one, a deadline of its own
(C{--head-timeout}) that trickling bytes do not move, and answers an
oversized head with 431.

L{Http11Site} serves it, and tells TLS (ALPN) that it speaks
C{http/1.1} only: a browser offering C{h2} and C{http/1.1} gets
C{http/1.1}, as it would from any HTTP/1.1 server.
"""

from __future__ import annotations

from typing import Any, Callable, cast

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

#: what ALPN may choose on every port: the server speaks HTTP/1.1 only
ALPN_PROTOCOLS = (b"http/1.1",)

#: the default of C{--head-timeout}: seconds a client has to send a request head
DEFAULT_HEAD_TIMEOUT = 10.0



def headTooLarge(body: bytes, contentType: bytes) -> bytes:
    """
    The whole 431 response, with C{body}, that refuses a request head over
    twisted.web's limits (16 KiB, 500 header lines).
    """
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: %s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (contentType, len(body), body)
    )


HEAD_TOO_LARGE = headTooLarge(b"request head over 16 KiB or 500 header lines\n", b"text/plain; charset=utf-8")


class HeadDeadlineChannel(HTTPChannel):
    """
    An HTTP/1.1 channel whose every request head has a deadline, and whose
    oversized heads are answered 431.

    The deadline of a connection's first head runs from the connection;
    each later one's from its first byte (between requests the connection
    is idle, which twisted.web's idle timeout bounds).  It ends when the
    head is complete: a body is the resource's business, and an upgrade to
    WebSocket leaves no timer behind.

    @ivar site: the L{Http11Site} (set by the site), for C{headTimeout}
        and C{headTooLarge}.
    """

    site: Any = None
    #: TCP or TLS (Twisted types it as an optional C{ITransport}, which has
    #: no C{abortConnection})
    transport: Any
    _deadline: IDelayedCall | None = None
    _awaitingHead = True
    _headStarted = False
    _headSize = 0
    _headLines = 0

    def connectionMade(self) -> None:
        """
        The first head's deadline runs from now.
        """
        super().connectionMade()
        self._armDeadline()

    def _armDeadline(self) -> None:
        timeout = getattr(self.site, "headTimeout", DEFAULT_HEAD_TIMEOUT)
        if timeout:
            self._deadline = self.callLater(timeout, self._headTimedOut)

    def _cancelDeadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _headTimedOut(self) -> None:
        """
        Too slow: a connection that sent nothing is closed, one holding a
        partial head is aborted (no answer to a client that trickles).
        """
        self._deadline = None
        if self._headStarted:
            self.transport.abortConnection()
        else:
            self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        The first byte of a keep-alive request starts its head's deadline.
        """
        if self._awaitingHead:
            self._headStarted = True
            if self._deadline is None:
                self._armDeadline()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        """
        Count the head against twisted.web's limits first, to answer 431
        rather than 400.
        """
        if self._awaitingHead:
            if self._deadline is None:
                # a pipelined head, already read with the previous request
                self._armDeadline()
            self._headSize += len(line)
            self._headLines += bool(line)
            # the request line and at most maxHeaders header lines
            if self._headSize > self.totalHeadersSize or self._headLines > self.maxHeaders + 1:
                self._refuseHead()
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        One line longer than 16 KiB: 431 too, not a silent close.
        """
        self._refuseHead()

    def _refuseHead(self) -> None:
        self._awaitingHead = False
        self._cancelDeadline()
        self.transport.write(getattr(self.site, "headTooLarge", HEAD_TOO_LARGE))
        self.loseConnection()

    def allHeadersReceived(self) -> None:
        """
        The head is complete in time.
        """
        self._awaitingHead = False
        self._cancelDeadline()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        """
        Wait for the next head (its deadline starts with its first byte).
        """
        self._awaitingHead = True
        self._headStarted = False
        self._headSize = self._headLines = 0
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        No deadline outlives the connection.
        """
        self._awaitingHead = False
        self._cancelDeadline()
        super().connectionLost(reason)


class Http11Site(Site):
    """
    A C{Site} of L{HeadDeadlineChannel}s that offers only C{http/1.1} to
    ALPN.

    @ivar headTimeout: seconds a client has to send each request head
        (0: no deadline).
    @ivar headTooLarge: the whole response to an oversized head.
    """

    # twisted.web types it as its own HTTP/1.1-or-2 wrapper; this site
    # speaks HTTP/1.1 only (ALPN offers nothing else)
    protocol = cast(Callable[[], Any], HeadDeadlineChannel)
    headTooLarge = HEAD_TOO_LARGE

    def __init__(self, resource: Any, *args: Any, headTimeout: float = DEFAULT_HEAD_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(resource, *args, **kwargs)
        self.headTimeout = headTimeout

    def acceptableProtocols(self) -> list[bytes]:
        """
        HTTP/1.1 only, even where twisted.web could speak HTTP/2.
        """
        return list(ALPN_PROTOCOLS)
