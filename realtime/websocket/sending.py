"""
The sending half of a session: frames and everything Autobahn writes leave
through one place, in order, once per reactor turn (C{realtime.delivery.writer});
deliveries can be held back (offline messages first); and a peer that stops
reading is told and dropped instead of growing this process's memory.

I{One budget for everything written.}  Deliveries, replies, error frames,
pongs, close frames and the handshake response all pass through
L{SessionOutput._write}, which counts them against the factory's
C{maxQueuedBytes}: the bytes queued this turn plus what Twisted held unsent
after the last flush (L{realtime.delivery.writer.unsentBytes}).  A session over it is
closed with 1013 at once, and aborted by Autobahn's closing-handshake timer
a second later if its peer does not read the close frame either.  Counting
only deliveries let a client that never reads, and keeps sending requests
that earn answers, grow this process by gigabytes.

I{A peer that does not read is not read from.}  While the transport's buffer
is over its high-water mark (C{pauseProducing}) the peer's own data stays in
the kernel, so its requests earn nothing more until it catches up.
"""

from __future__ import annotations

from typing import Callable, Iterable

from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger

from realtime import closecodes
from realtime.delivery.fanout import Frame
from realtime.delivery.timers import Timeout
from realtime.delivery.writer import sendNow, unsentBytes
from realtime.websocket._autobahn.connection import ServerConnection

_STATE_OPEN = WebSocketProtocol.STATE_OPEN


def validCloseCode(code: int, fallback: int) -> int:
    """
    C{code} if a server may send it in a close frame, else C{fallback}.
    """
    if code == 1000 or 3000 <= code <= 4999 or code in (1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013):
        return code
    return fallback


class SessionOutput(ServerConnection):
    """
    The connection as the L{ISession} writes to it (and the transport's
    streaming producer); its factory has a C{writer}, a C{wheel},
    C{maxQueuedBytes} and C{slowConsumerTimeout}.
    """

    _log = Logger()

    #: the session's id and uid (set by the protocol), for the log
    sessionId: str
    uid: str

    _paused = False
    #: bytes written and not known to be taken by the kernel (see module doc)
    _queued = 0
    _pauseTimeout: Timeout | None = None
    _dropped = False
    _held: list[Frame] | None = None
    _outgoing: list[bytes] | None = None

    #: when the peer last sent anything, and whether it was pinged since
    _lastHeard = 0.0
    _pinged = False

    def dataReceived(self, data: bytes) -> None:
        """
        Anything from the peer (a pong too) shows it is alive.
        """
        self._lastHeard = self.factory.clock.seconds()
        self._pinged = False
        super().dataReceived(data)

    def keepalive(self, now: float, interval: float) -> None:
        """
        Ping a peer silent for C{interval}; drop one silent for twice that
        (C{realtime.delivery.keepalive} calls this about once per interval).
        """
        if self.state != _STATE_OPEN or self._paused:
            # a session we stopped reading cannot be heard: the
            # slow-consumer timeout decides about it
            return
        silent = now - self._lastHeard
        if silent >= 2 * interval:
            self.wasClean = False
            self.wasNotCleanReason = f"no answer to a ping within {interval:g} s"
            self.dropConnection(abort=True)
        elif silent >= interval and not self._pinged:
            self._pinged = True
            self.sendPing()

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Queue C{frame} on the transport, unless closing or hopelessly behind.
        """
        if self.state != _STATE_OPEN or self._dropped:
            return False
        if self._held is not None:
            self._held.append(frame)
            return True
        # L{_write}, inlined: this is the fan-out's inner loop
        wire = frame.wire
        queued = self._queued + len(wire)
        if queued > self.factory.maxQueuedBytes:
            self._dropSlowConsumer()
            return False
        self._queued = queued
        self.factory.writer.write(self, wire)
        return True

    def _write(self, data: bytes) -> bool:
        """
        Queue C{data} for the end of this turn if it fits the budget, else
        drop the session (and not queue it).

        Our 1013 close frame itself is always queued (L{_dropSlowConsumer}
        marks the session dropped first); after it nothing is.
        """
        queued = self._queued + len(data)
        if self._dropped:
            if self.state != _STATE_OPEN:
                return False
        elif queued > self.factory.maxQueuedBytes:
            self._dropSlowConsumer()
            return False
        self._queued = queued
        self.factory.writer.write(self, data)
        return True

    # -- writing: one send per connection per reactor turn ---------------------

    #: everything Autobahn writes (handshake responses, replies, pongs,
    #: close frames) joins the frames of this turn, in order
    writeData = _write

    def trickleStarts(self) -> None:
        """
        Send what this turn queued; Autobahn then writes to the transport
        itself, so the socket may no longer be written to directly.
        """
        self.flushOutgoing()
        self._directSend = None

    #: the socket's C{send} while everything so far went out directly
    #: (L{realtime.delivery.writer.sendNow}); C{None}: ask the transport again.
    _directSend: Callable[[bytes], int] | None = None

    def flushOutgoing(self) -> None:
        """
        Send what this turn queued, with one write.
        """
        outgoing, self._outgoing = self._outgoing, None
        if outgoing and self.transport is not None:
            send = self._directSend = sendNow(self.transport, outgoing, self._directSend)
            if send is not None:
                self._queued = 0
            else:
                held = unsentBytes(self.transport)
                if held is not None:
                    self._queued = held
                elif not self._paused:
                    # a transport that cannot tell: what it took while it
                    # keeps up is gone; while paused, everything counts
                    self._queued = 0

    def isOpen(self) -> bool:
        """
        Whether frames can still be written.
        """
        return self.state == _STATE_OPEN and not self._dropped

    def holdDeliveries(self) -> None:
        """
        Hold frames back until C{releaseDeliveries}.
        """
        if self._held is None:
            self._held = []

    def releaseDeliveries(self, first: Iterable[Frame] = ()) -> None:
        """
        Write C{first}, then what was held, and stop holding.
        """
        held, self._held = self._held or [], None
        for frame in first:
            self.sendPrepared(frame)
        for frame in held:
            self.sendPrepared(frame)

    def close(self, code: int = closecodes.NORMAL, reason: str = "") -> None:
        """
        Start the closing handshake.

        Unlike Autobahn's C{sendClose}, this may send the RFC 6455 codes a
        server needs (1001, 1008, 1011, 1013), not only 1000 and 3000-4999.
        """
        if self.state == _STATE_OPEN:
            code = validCloseCode(code, closecodes.POLICY_VIOLATION)
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123) if reason else None)

    # -- IPushProducer: the transport tells us when the peer stops reading ---

    def pauseProducing(self) -> None:
        """
        The send buffer passed its high-water mark: stop reading from the
        peer, and give it C{slowConsumerTimeout} seconds to catch up.
        """
        if not self._paused:
            self._paused = True
            self._pauseReading()
            self._pauseTimeout = self.factory.wheel.schedule(
                self.factory.slowConsumerTimeout, self._dropSlowConsumer
            )

    def resumeProducing(self) -> None:
        """
        The buffer drained: nothing is queued, read from the peer again.
        """
        self._paused = False
        self._queued = 0
        if self._pauseTimeout is not None:
            self._pauseTimeout.cancel()
            self._pauseTimeout = None
        if not self._dropped:
            self._resumeReading()

    _readingPaused = False

    def _pauseReading(self) -> None:
        if not self._readingPaused and self.transport is not None:
            self._readingPaused = True
            self.transport.pauseProducing()

    def _resumeReading(self) -> None:
        if self._readingPaused and self.transport is not None:
            self._readingPaused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """
        The transport is going away; C{onClose} cleans up.
        """

    def _dropSlowConsumer(self) -> None:
        self._pauseTimeout = None
        if self._dropped or self.state != _STATE_OPEN:
            return
        self._dropped = True
        self._pauseReading()
        self.factory.countSlowConsumer()
        self._log.info(
            "dropping slow consumer {session} (uid {uid}, {peer})",
            session=self.sessionId,
            uid=self.uid,
            peer=self.peer,
        )
        self.close(closecodes.SLOW_CONSUMER, "slow consumer")

    def stopOutput(self) -> None:
        """
        The connection is gone: drop what is queued and the slow-consumer timer.
        """
        self._outgoing = None
        if self._pauseTimeout is not None:
            self._pauseTimeout.cancel()
            self._pauseTimeout = None
