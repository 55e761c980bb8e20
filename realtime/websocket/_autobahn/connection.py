"""
The one subclass of Autobahn's server protocol: every Autobahn method this
server overrides is overridden here, and nowhere else.

Four reasons, each a section of L{ServerConnection}:

 - I{A lean adapter.}  Autobahn's Twisted adapter logs at debug level on
   every read, connection and loss, building the log arguments eagerly
   (C{hltype}, C{hlval}: inspecting and colouring function names) whether or
   not debug logging is on, and C{WebSocketProtocol._connectionMade} copies
   some 30 options onto every instance and pretty-prints them for the same
   debug line.  Measured with cProfile on the connect path that was some
   20 microseconds per connection out of about 110.  L{ServerConnection}
   does what the adapter does without the logging: the framework-independent
   halves of its methods (C{privates.dataReceived}, C{privates.connectionLost})
   are called directly, the options are class attributes of the protocol
   class the factory builds, and what C{_connectionMade} sets to the same
   value on every connection is a class attribute here, so an idle
   connection's own dict holds only what it changed.  Autobahn's own debug
   logging still works on the paths left to it (a handshake the fast path
   declines), with Autobahn's formatting.  (The server used to replace
   C{hltype} and C{hlval} in two Autobahn modules, process-wide and for
   good; every method that calls them on the common path is replaced here,
   so that patch is gone: C{tests/test_websocket_privates.py} checks that a
   connection's common life calls neither.)
 - I{One way out.}  Everything Autobahn writes goes to L{writeData}, which
   the sending half (C{realtime.websocket.sending}) replaces with its
   budgeted, once-per-turn queue; the transport closes only after
   L{flushOutgoing}.
 - I{Strict RFC 6455.}  The corrections C{realtime.websocket._autobahn.rfc6455}
   explains (with the options L{realtime.websocket._autobahn.rfc6455.strictOptions}
   sets): a bounded number of frames per message, a compressed message just
   over the limit refused and not cut, nothing handled after our close
   frame, a clean close that flushes and lingers boundedly.
 - I{The fast opening handshake} (C{realtime.websocket._autobahn.opening}).

C{tests/test_websocket_handshake.py} checks that a connection ends up with
every attribute Autobahn's own methods give it, with the same values, so a
new Autobahn that sets more fails there and not in production; every private
name used here is looked up in C{realtime.websocket._autobahn.privates}.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from autobahn.twisted.util import create_transport_details
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import Timings, TrafficStats, WebSocketProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from realtime import closecodes
from realtime.delivery.timers import Timeout
from realtime.websocket._autobahn import opening, privates
from realtime.websocket._autobahn.options import MISSING, autobahnDefaults, sameOption

_STATE_OPEN = WebSocketProtocol.STATE_OPEN
_STATE_CLOSED = WebSocketProtocol.STATE_CLOSED
_STATE_CONNECTING = WebSocketProtocol.STATE_CONNECTING


class ServerConnection(WebSocketServerProtocol):
    """
    Autobahn's Twisted server protocol, lean and strict.

    Its factory has C{maxMessageSize}, C{maxMessageFrames}, a C{wheel}
    (L{realtime.delivery.timers.TimeoutWheel}) and C{slowConsumerTimeout};
    the subclass provides C{decideUpgrade(upgrade)} (answering as
    C{onConnect} would, for the fast handshake) and C{flushOutgoing()}
    (called before the transport closes).
    """

    #: whatever Twisted connected us to: TCP, TLS over TCP, a Unix socket,
    #: a test's StringTransport (Twisted types it as an optional
    #: C{ITransport}, which has none of the TCP, producer and abort
    #: methods a server connection uses)
    transport: Any

    # The protocol options (C{CONFIG_ATTRS}) this server reads: class
    # attributes of the protocol class the factory builds, copied from the
    # factory at connection otherwise.
    tcpNoDelay: bool
    openHandshakeTimeout: float
    autoPingInterval: float
    maxConnections: int
    trustXForwardedFor: int
    versions: list[int]
    allowedOriginsPatterns: list[Any]

    # -- the lean adapter ------------------------------------------------------

    # What WebSocketProtocol._connectionMade sets to the same value on every
    # connection, as class attributes: read the same, and an idle
    # connection's own dict holds only what it changed.
    _perMessageCompress = None
    trackedTimings = None  # type: ignore[assignment]
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    data = b""
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason: str | None = None  # type: ignore[assignment]
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
    #: Autobahn's queue for trickled sends (C{sync}/C{chopsize}), which only
    #: tests use: one shared, empty and immutable until a connection needs
    #: its own (an empty deque is 600 bytes an idle connection would carry)
    send_queue: Any = ()

    def connectionMade(self) -> None:
        """
        C{WebSocketAdapterProtocol.connectionMade}: transport details, Nagle
        off, then the per-connection state of C{_connectionMade}.
        """
        details = create_transport_details(self.transport, self.is_server)
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        self._transport_details = details
        self.peer = details.peer
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # Unix sockets and the like have no Nagle to turn off
            pass
        factory = self.factory
        # a protocol class the factory built (C{options.configuredClass}) has no
        # CONFIG_ATTRS left to copy; any other gets the factory's options
        # that differ from the defaults it already has, unless set on it
        instance = self.__dict__
        for name in self.CONFIG_ATTRS:
            value = getattr(factory, name)
            if name not in instance and not sameOption(getattr(self, name, MISSING), value):
                setattr(self, name, value)
        if self.trackTimings:
            self.trackedTimings = Timings()
        self.trafficStats = TrafficStats()
        self.state = _STATE_CONNECTING
        self.utf8validator = Utf8Validator()
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout
            )
        factory.countConnections += 1

    def dataReceived(self, data: bytes) -> None:
        """
        C{WebSocketAdapterProtocol.dataReceived}.
        """
        privates.dataReceived(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        C{WebSocketAdapterProtocol.connectionLost} (a TLS failure is logged)
        and C{WebSocketServerProtocol._connectionLost}; the linger timer has
        nothing left to do.
        """
        if self._lingerTimeout is not None:
            self._lingerTimeout.cancel()
            self._lingerTimeout = None
        error = reason.value
        if error is not None and privates.isTlsError(error):
            self.log.error(privates.tlsReason(error))
        privates.connectionLost(self, reason)
        self.factory.countConnections -= 1
        # Autobahn resolves is_closed with the protocol itself: a reference
        # cycle, so every closed connection (and its transport and socket
        # object) waited for a full collection, which the tuned collector
        # (realtime.ops.gctuning) runs only after millions of allocations:
        # tens of MB per few thousand reconnects.  Nothing waits on it now.
        self.__dict__.pop("is_closed", None)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Everything Autobahn writes (handshake responses, frames, pongs,
        close frames) goes to L{writeData}, in order.  A trickled send
        (C{sync}, C{chopsize}: only tests use them) takes Autobahn's
        queue, with a queue of this connection's own, once what was
        written before has left (L{trickleStarts}).
        """
        if sync or chopsize:
            self.trickleStarts()
            if "send_queue" not in self.__dict__:
                self.send_queue = deque()
            WebSocketServerProtocol.sendData(self, data, sync, chopsize)
        else:
            self.writeData(data)

    def writeData(self, data: bytes) -> bool:
        """
        Write C{data} to the transport (the subclass queues it instead, or
        refuses it: C{False}).
        """
        self.transport.write(data)
        return True

    def trickleStarts(self) -> None:
        """
        Autobahn is about to write to the transport itself: send what was
        queued first.
        """
        self.flushOutgoing()

    def _closeConnection(self, abort: bool = False) -> None:
        """
        What is queued goes out before the transport closes (an abort then
        discards whatever the kernel did not take at once).
        """
        self.flushOutgoing()
        privates.closeConnection(self, abort)

    def flushOutgoing(self) -> None:
        """
        Send what this connection queued itself (nothing, here).
        """

    # -- the handshake -----------------------------------------------------------

    #: response headers a refused handshake carries besides Autobahn's
    refusalHeaders: tuple[tuple[str, str], ...] = ()

    def processHandshake(self) -> None:
        """
        The fast path when it applies, else Autobahn's.
        """
        if not opening.openFast(self):
            WebSocketServerProtocol.processHandshake(self)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """
        Autobahn's, with L{refusalHeaders} (both handshake paths end here).
        """
        if self.refusalHeaders:
            responseHeaders = [*(responseHeaders or ()), *self.refusalHeaders]
        WebSocketServerProtocol.failHandshake(self, reason, code, responseHeaders)

    #: what Autobahn keeps of the opening handshake, not needed once the
    #: connection is authenticated
    HANDSHAKE_ATTRIBUTES = (
        "http_headers",
        "http_request_data",
        "http_response_data",
        "http_status_line",
        "http_request_uri",
        "http_request_params",
        "http_request_path",
        "http_request_host",
        "websocket_origin",
        "websocket_protocols",
        "websocket_extensions",
        "_wskey",
    )

    def forgetOpeningHandshake(self) -> None:
        """
        Drop L{HANDSHAKE_ATTRIBUTES}, to keep an idle connection small.
        """
        for name in self.HANDSHAKE_ATTRIBUTES:
            self.__dict__.pop(name, None)

    # -- strict RFC 6455 (realtime.websocket._autobahn.rfc6455) -----------------

    _lingerTimeout: Timeout | None = None

    #: continuation frames of the message being received (only a
    #: fragmented message sets it: a single-frame one costs nothing)
    _continuations = 0

    def onMessageFrameBegin(self, length: int) -> None:
        """
        Autobahn's, then refuse a message with more than C{maxMessageFrames}
        frames: the first frame of a message has a data opcode, each
        continuation 0.
        """
        WebSocketServerProtocol.onMessageFrameBegin(self, length)
        if self.current_frame.opcode == 0:
            count = self._continuations = self._continuations + 1
            limit = self.factory.maxMessageFrames
            if count >= limit and not self.failedByMe:
                self._fail_connection(
                    closecodes.MESSAGE_TOO_BIG, f"received WebSocket message in more than {limit} frames"
                )

    def onMessageEnd(self) -> None:
        """
        Refuse a message over the limit that Autobahn let through, drop one
        that completes after our close frame; hand on every other.

        Handing on is what Autobahn's C{onMessageEnd} does, minus firing its
        C{"message"} event for listeners added with C{.on("message", ...)}:
        a Deferred and two callbacks per message, and this server adds no
        listener.
        """
        parts = self.message_data
        self.message_data = None  # type: ignore[assignment]
        if self._continuations:
            del self._continuations
        if self.state != _STATE_OPEN or self.failedByMe:
            return
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        limit = self.factory.maxMessageSize
        if limit and len(payload) > limit:
            # the path Autobahn's own limits take: close 1009, and later
            # frames of this connection are ignored
            self._fail_connection(
                closecodes.MESSAGE_TOO_BIG, f"received WebSocket message exceeds payload limit of {limit} octets"
            )
            return
        # what the adapter's _onMessage does
        self.onMessage(payload, self.message_is_binary)

    def onFrameEnd(self) -> bool | None:
        """
        Autobahn's, then forget the finished frame's unmasker and the last
        UTF-8 check: Autobahn makes new ones for the next frame and message,
        and a client that goes quiet after its last message (a push client
        after its uid) should not hold them.
        """
        result: bool | None = WebSocketServerProtocol.onFrameEnd(self)
        if self.current_frame is None:
            self.__dict__.pop("current_frame_masker", None)
            if not self.inside_message:
                self.__dict__.pop("utf8validateLast", None)
        return result

    def dropConnection(self, abort: bool = False) -> None:
        """
        Autobahn's C{dropConnection}, with C{abort} ignored once the closing
        handshake completed; timeouts and failures still abort.

        A peer that has stopped reading would keep the connection open
        forever then, so it is aborted after C{slowConsumerTimeout} seconds,
        the time any slow consumer is given.
        """
        if self.wasClean and self.state != _STATE_CLOSED:
            abort = False
            if self._lingerTimeout is None:
                factory = self.factory
                self._lingerTimeout = factory.wheel.schedule(factory.slowConsumerTimeout, self._lingeredTooLong)
        WebSocketServerProtocol.dropConnection(self, abort)

    def _lingeredTooLong(self) -> None:
        self._lingerTimeout = None
        self.transport.abortConnection()



# Autobahn's defaults are class attributes of every server connection, so
# the protocol class a factory builds (options.configuredClass) carries only
# the options that factory changed: a handful instead of all 29.
for _name, _value in autobahnDefaults().items():
    setattr(ServerConnection, _name, _value)
del _name, _value
