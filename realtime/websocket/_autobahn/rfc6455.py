"""
Strict RFC 6455 / RFC 7692 behaviour where Autobahn's server defaults, or
Autobahn itself, fall short.  Everything here is checked end to end by
C{tests/test_conformance.py} and by the Autobahn testsuite
(C{tests/conformance/}).

Five corrections: the options L{strictOptions} gives the factory, and the
overrides of L{realtime.websocket._autobahn.connection.ServerConnection}.

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
   C{ServerConnection.dropConnection} flushes instead.
 - I{A compressed message a little over the limit is refused, not cut.}
   Autobahn (26.10) inflates at most the remaining budget and takes "output
   filled the budget, no input left" for "message complete", but zlib may
   still hold the end of a back-reference (up to 258 bytes, in repetitive
   data: 65537 or 65792 "b"s against a 65536 limit).  Such a message is
   delivered cut to the limit.  So Autobahn is given one byte more than the
   limit, which always exposes an oversized message, and
   C{ServerConnection.onMessageEnd} refuses anything over the limit itself.
   Inflating stays bounded: a bomb is still stopped at the budget.
 - I{Nothing is handled after our close frame.}  Autobahn still delivers
   messages that complete after we started the closing handshake (shutdown,
   slow consumer, refused authentication); an answer to one cannot be sent
   (RFC 6455 section 5.5.1) and Autobahn raises trying, so they are dropped.
 - I{A message has a bounded number of frames.}  Autobahn bounds a
   message's bytes, not its frames: empty continuation frames keep one
   message open forever, each adding an entry to the list of its parts.
   C{ServerConnection.onMessageFrameBegin} closes (1009) a connection whose
   message goes past the factory's C{maxMessageFrames}.
"""

from __future__ import annotations

from typing import Any


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
