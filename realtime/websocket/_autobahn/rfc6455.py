"""
Strict RFC 6455 / RFC 7692 behaviour where Autobahn's server defaults, or
Autobahn itself, fall short.  Everything here is checked end to end by
C{tests/test_conformance.py} and by the Autobahn testsuite
(C{tests/conformance/}).

Five corrections:

 - I{A failed connection gets a close frame, after what was already queued.}
   Twisted's C{abortConnection} closes the socket at once and discards the
   write buffer, which Twisted only writes out on the reactor's next write
   pass.  On a protocol error Autobahn, by default (C{failByDrop=True}),
   aborts: the reply to a valid message read just before the bad frame is
   lost and the peer never learns the close code.  Those are the testsuite's
   NON-STRICT cases 3.2-3.4, 4.1.3-4.1.5, 4.2.3-4.2.5 and 5.15, where the
   expected echo never arrives.  L{strictOptions} turns it off.
 - I{A clean closing handshake flushes.}  Autobahn also aborts when a peer's
   close frame answers one we sent.  If ours was queued in the same read (a
   close frame with an invalid code or a reason that is not UTF-8: we answer
   1002 or 1007, then take the peer's frame for the reply) our close frame,
   and anything queued before it, is lost (testsuite 7.3.2, 7.3.6, 7.5.1,
   7.9.*: it accepts a dropped connection there, so it still says OK).
   L{StrictProtocol.dropConnection} flushes instead.
 - I{A compressed message a little over the limit is refused, not cut.}
   Autobahn (26.10) inflates at most the remaining budget and takes "output
   filled the budget, no input left" for "message complete", but zlib may
   still hold the end of a back-reference (up to 258 bytes, in repetitive
   data: 65537 or 65792 "b"s against a 65536 limit).  Such a message is
   delivered cut to the limit.  So Autobahn is given one byte more than the
   limit, which always exposes an oversized message, and
   L{StrictProtocol.onMessageEnd} refuses anything over the limit itself.
   Inflating stays bounded: a bomb is still stopped at the budget.
 - I{Nothing is handled after our close frame.}  Autobahn still delivers
   messages that complete after we started the closing handshake (shutdown,
   slow consumer, refused authentication); an answer to one cannot be sent
   (RFC 6455 section 5.5.1) and Autobahn raises trying, so they are dropped.
 - I{A message has a bounded number of frames.}  Autobahn bounds a
   message's bytes, not its frames: empty continuation frames keep one
   message open forever, each adding an entry to the list of its parts.
   L{StrictProtocol.onMessageFrameBegin} closes (1009) a connection whose
   message goes past the factory's C{maxMessageFrames}.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from realtime import closecodes
from realtime.delivery.timers import Timeout

_STATE_OPEN = WebSocketServerProtocol.STATE_OPEN
_STATE_CLOSED = WebSocketServerProtocol.STATE_CLOSED


def strictOptions(maxMessageSize: int) -> dict[str, Any]:
    """
    The Autobahn protocol options of a server refusing (1009) any message
    larger than C{maxMessageSize} bytes (0: no limit).

    Besides the limit: fail with a close frame, not a dropped connection,
    and answer a peer's close with its own code (RFC 6455 section 5.5.1),
    not always 1000.
    """
    budget = maxMessageSize + 1 if maxMessageSize > 0 else 0
    return {
        "failByDrop": False,
        "echoCloseCodeReason": True,
        "maxMessagePayloadSize": budget,
        "maxFramePayloadSize": budget,
    }


class StrictProtocol:
    """
    A mixin for a C{WebSocketServerProtocol} configured with L{strictOptions}
    whose factory has C{maxMessageSize}, C{maxMessageFrames}, a C{wheel}
    (L{realtime.delivery.timers.TimeoutWheel}) and a C{slowConsumerTimeout}.
    """

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
        super().onMessageFrameBegin(length)  # type: ignore[misc]
        if self.current_frame.opcode == 0:  # type: ignore[attr-defined]
            count = self._continuations = self._continuations + 1
            limit = self.factory.maxMessageFrames  # type: ignore[attr-defined]
            if count >= limit and not self.failedByMe:  # type: ignore[attr-defined]
                self._fail_connection(  # type: ignore[attr-defined]
                    closecodes.MESSAGE_TOO_BIG, f"received WebSocket message in more than {limit} frames"
                )

    def onMessageEnd(self) -> None:
        """
        Refuse a message over the limit that Autobahn let through, drop one
        that completes after our close frame (see the module docstring); hand
        on every other.

        Handing on is what Autobahn's C{onMessageEnd} does, minus firing its
        C{"message"} event for listeners added with C{.on("message", ...)}:
        a Deferred and two callbacks per message, and this server adds no
        listener.
        """
        parts = self.message_data  # type: ignore[attr-defined]
        self.message_data = None
        if self._continuations:
            del self._continuations
        if self.state != _STATE_OPEN or self.failedByMe:  # type: ignore[attr-defined]
            return
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        limit = self.factory.maxMessageSize  # type: ignore[attr-defined]
        if limit and len(payload) > limit:
            # the path Autobahn's own limits take: close 1009, and later
            # frames of this connection are ignored
            self._fail_connection(  # type: ignore[attr-defined]
                closecodes.MESSAGE_TOO_BIG, f"received WebSocket message exceeds payload limit of {limit} octets"
            )
            return
        self._onMessage(payload, self.message_is_binary)  # type: ignore[attr-defined]

    def onFrameEnd(self) -> bool | None:
        """
        Autobahn's, then forget the finished frame's unmasker and the last
        UTF-8 check: Autobahn makes new ones for the next frame and message,
        and a client that goes quiet after its last message (a push client
        after its uid) should not hold them.
        """
        result = super().onFrameEnd()  # type: ignore[misc]
        if self.current_frame is None:  # type: ignore[attr-defined]
            self.__dict__.pop("current_frame_masker", None)
            if not self.inside_message:  # type: ignore[attr-defined]
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
        if self.wasClean and self.state != _STATE_CLOSED:  # type: ignore[attr-defined]
            abort = False
            if self._lingerTimeout is None:
                factory = self.factory  # type: ignore[attr-defined]
                self._lingerTimeout = factory.wheel.schedule(factory.slowConsumerTimeout, self._lingeredTooLong)
        super().dropConnection(abort)  # type: ignore[misc]

    def _lingeredTooLong(self) -> None:
        self._lingerTimeout = None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Gone: the linger timer has nothing left to do.
        """
        if self._lingerTimeout is not None:
            self._lingerTimeout.cancel()
            self._lingerTimeout = None
        super().connectionLost(reason)  # type: ignore[misc]
