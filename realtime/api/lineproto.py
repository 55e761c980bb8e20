"""
The line port: the internal push port of the Workerman push service.

A backend opens a TCP connection and writes one JSON object per line::

    {"uid": "uid1", "percent": "88%"}\\n

and reads ``ok`` (at least one connection got it), ``queued`` (nobody
is connected; the push waits in the uid's offline queue and is delivered,
once, when the uid connects) or ``fail`` (neither: no connection and no
offline queue, or the queue is full) back, one answer line per request
line, in order.  With the offline queue off (``--offline-ttl 0``) the
answers are exactly Workerman's ``ok`` and ``fail``.  Exactly as Workerman's
``sendMessageByUid($uid, $buffer)`` did, the message the browser receives is
the whole line (the raw JSON text, without its line ending), not a field of
it, so existing pages keep working unchanged.

Beyond Workerman:

- ``"uid"`` may be a list of uids (``ok`` if any connection got it), and an
  integer uid is taken as its decimal text, because PHP's ``json_encode`` of a
  numeric user id gives a number and Workerman matched it all the same;
- ``{"broadcast": true, ...}`` instead of ``"uid"`` pushes the line to every
  connection;
- a line that cannot be pushed is answered with one ``error: ...`` line
  naming the problem instead of a dropped connection or a silent ``fail``,
  and the connection stays usable;
- lines may end in ``\\r\\n``; empty lines are ignored;
- a connection whose first line is an HTTP request line is answered with an
  error and closed: a hostile web page cannot make a browser push through
  this port with a cross-origin POST.

The error lines are::

    error: line is not UTF-8
    error: invalid JSON (Expecting value at column 1)
    error: expected a JSON object
    error: missing "uid" (or "broadcast": true)
    error: give either "uid" or "broadcast": true, not both
    error: "uid" must be a non-empty string or a list of them
    error: too many uids (10001; at most 10000 per push, --max-uids-per-push)
    error: line longer than 1048576 bytes   (--max-message-size)
    error: message store unavailable (database or disk is full)
    error: shutting down
    error: internal error

``message store unavailable`` names what the store said; the push was not
queued (the server logs the fault once, and ``/readyz`` is 503 until the
store works again).  ``shutting down``: the server is stopping; push again
in a moment, or to another node.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime.core.jsoncodec import JSONError, decode
from realtime.core.uids import checkUid
from realtime.delivery.writer import TurnWriter, sendNow
from realtime.interfaces import IBroker
from realtime.store.health import ShuttingDown, StoreUnavailable
from realtime.values import Envelope, PushResult, Target, ToAll, ToUids

#: how many answers one connection may have outstanding before it is no longer
#: read from; it is read again once half of them are answered
MAX_PENDING = 64

_OK = b"ok"
_FAIL = b"fail"

#: the first line of an HTTP request (``POST / HTTP/1.1``)
HTTP_REQUEST_LINE = re.compile(rb"[A-Z]{3,10} \S+ HTTP/\d")
_QUEUED = b"queued"
_INTERNAL = b"error: internal error"
_SHUTTING_DOWN = b"error: shutting down"
_UID_TYPE = '"uid" must be a non-empty string or a list of them'


class LineError(ValueError):
    """
    A request line that cannot be pushed; C{str()} is the text after
    ``error: ``.
    """


class TooManyUids(LineError):
    """
    A push naming more uids than C{--max-uids-per-push} allows: its work
    and its answer would grow without bound.
    """


def targetUids(value: object, maxUids: int | None = None) -> tuple[str, ...]:
    """
    The uids a request's ``"uid"`` field addresses.

    Shared by the line port and the HTTP API so both accept the same uids.

    @param value: a decoded JSON value: a string, an integer (PHP sends
        numeric ids as numbers), or a non-empty list of those.
    @param maxUids: the longest list accepted (C{None}: any).
    @raise LineError: for anything else, an empty uid, or one that no client
        can have (L{checkUid}: control or format characters, a lone surrogate
        from a C{\\ud800} escape, ...).
    @raise TooManyUids: for a list longer than C{maxUids}.
    """
    if type(value) is str and value:
        # the common case: one uid
        return (_checkUid(value),)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise LineError(_UID_TYPE)
    if maxUids is not None and len(items) > maxUids:
        raise TooManyUids(f"too many uids ({len(items)}; at most {maxUids} per push, --max-uids-per-push)")
    uids = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item:
            raise LineError(_UID_TYPE)
        uids.append(_checkUid(item))
    return tuple(uids)


def _checkUid(uid: str) -> str:
    """
    C{checkUid}'s verdict as the line port and the API word it.
    """
    try:
        return checkUid(uid, '"uid"')
    except ValueError as e:
        raise LineError(str(e)) from None


def parseLine(line: bytes, maxUids: int | None = None) -> Target:
    """
    Where a request line asks its own text to be pushed.

    Pure, so every malformed case is tested without a connection.

    @param line: one line, without its line ending.
    @param maxUids: the most uids one line may name (C{None}: any).
    @raise LineError: naming what is wrong with it.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError("line is not UTF-8") from None
    try:
        request = decode(text)
    except JSONError as e:
        where = "" if e.colno is None else f" at column {e.colno}"
        raise LineError(f"invalid JSON ({e.msg}{where})") from None
    if not isinstance(request, dict):
        raise LineError("expected a JSON object")
    broadcast = bool(request.get("broadcast"))
    if "uid" in request:
        if broadcast:
            raise LineError('give either "uid" or "broadcast": true, not both')
        return ToUids(targetUids(request["uid"], maxUids))
    if broadcast:
        return ToAll()
    raise LineError('missing "uid" (or "broadcast": true)')


@implementer(IPushProducer, IHalfCloseableProtocol)
class LinePushProtocol(LineReceiver):
    """
    One backend connection to the line port.

    Requests are published as soon as they arrive, but answered strictly in
    the order they came: each line takes a place in C{_pending} and answers
    leave from its head only, however the broker's Deferreds fire.  The
    connection stops being read while C{MAX_PENDING} answers are outstanding
    or while the backend is not reading its answers (the protocol is its own
    transport's producer), so a backend that floods the port cannot grow this
    process's memory.

    @ivar factory: the L{LinePushFactory}, for the broker and the counters.
    """

    delimiter = b"\n"
    log = Logger()
    factory: LinePushFactory
    #: TCP, TLS or a Unix socket (Twisted types it as an optional
    #: C{ITransport}, which is not a producer)
    transport: Any

    def __init__(self) -> None:
        self._pending: deque[list[bytes | None]] = deque()
        self._pausedBy: set[str] = set()
        self._discarding = False
        self._lost = False
        self._readClosed = False
        self._seenLine = False

    def connectionMade(self) -> None:
        """
        Become the transport's producer, so answers that pile up unread stop
        the reading of more requests.
        """
        self.factory.connections += 1
        self.transport.registerProducer(self, True)

    def readConnectionLost(self) -> None:
        """
        The backend shut down its sending side (``nc -N``, ``shutdown()``
        after the last line): answer what is in flight, then close.
        """
        self._readClosed = True
        self.dataReceived(b"\n" if self._unread.strip() else b"")
        self._flush()

    def writeConnectionLost(self) -> None:
        """
        Nothing to do: we never half-close.
        """

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        Pushes still in flight go on; their answers are dropped.
        """
        self._lost = True
        self.factory.connections -= 1

    # -- reading -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split lines like C{LineReceiver}, but an overlong line costs only that
        line: it is reported once, and reading resumes after its newline.

        C{LineReceiver.dataReceived} hands everything after an overlong line
        to C{lineLengthExceeded} in one piece and cannot resume within the same
        call, hence this replacement.
        """
        if self._receiving:
            self._unread += data
            return
        self._receiving = True
        try:
            buffer = self._unread + data if self._unread else data
            self._unread = b""
            start = 0
            while not self.paused and not self._lost:
                end = buffer.find(b"\n", start)
                if end < 0:
                    break
                line = buffer[start:end]
                start = end + 1
                if self._discarding:
                    self._discarding = False
                    continue
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self.MAX_LENGTH:
                    self.lineLengthExceeded(line)
                    self._discarding = False
                    continue
                self.lineReceived(line)
            rest = buffer[start:]
            if self.paused or self._lost:
                self._unread = rest
            elif self._discarding:
                self._unread = b""
            elif len(rest) > self.MAX_LENGTH + 1:
                # no newline yet, and too long already even allowing for \r
                self.lineLengthExceeded(rest)
            else:
                self._unread = rest
        finally:
            self._receiving = False

    #: bytes read and not yet split into lines; C{dataReceived} is running
    #: (our own names: C{LineReceiver}'s are private to it)
    _unread = b""
    _receiving = False

    def clearLineBuffer(self) -> bytes:
        """
        C{LineReceiver}'s, on this class's buffer.
        """
        unread, self._unread = self._unread, b""
        return unread

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Report the overlong line once and discard it up to its newline; the
        connection stays open, unlike C{LineReceiver}'s default.
        """
        self._discarding = True
        self._unread = b""
        self._answerError(f"error: line longer than {self.MAX_LENGTH} bytes".encode())

    def lineReceived(self, line: bytes) -> None:
        """
        Publish the line to where it asks, or answer why it cannot be.
        """
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        if not self._seenLine:
            self._seenLine = True
            if HTTP_REQUEST_LINE.match(line):
                # A browser made to POST here by a hostile page would have its
                # body pushed: refuse HTTP outright, as Redis does.
                self.factory.errors += 1
                self.sendLine(b"error: this is the line-JSON push port, not HTTP")
                self.flushOutgoing()
                self._lost = True
                self.transport.loseConnection()
                return
        try:
            target = parseLine(line, self.factory.maxUids)
        except LineError as e:
            self._answerError(b"error: " + str(e).encode("utf-8"))
            return
        factory = self.factory
        factory.pushes += 1
        if not self._pending and factory.pushNow is not None:
            # the common case, answered at once: no Deferreds per push
            try:
                delivered = factory.pushNow(target, line, False)
            except Exception:
                self.log.failure("line port push failed")
                factory.errors += 1
                self.sendLine(_INTERNAL)
                return
            if delivered is not None:
                if delivered:
                    factory.delivered += 1
                    self.sendLine(_OK)
                else:
                    factory.undelivered += 1
                    self.sendLine(_FAIL)
                return
        slot: list[bytes | None] = [None]
        self._pending.append(slot)
        if len(self._pending) >= MAX_PENDING:
            self._pauseReading("pending")
        # a PushResult, then the answer line
        d: Deferred[Any] = maybeDeferred(factory.broker.publish, Envelope(target, line, False))
        d.addCallbacks(self._cbPublished, self._ebPublished)
        d.addCallback(self._fill, slot)
        d.addErrback(lambda f: self.log.failure("could not answer a line port request", f))

    def _cbPublished(self, result: PushResult) -> bytes:
        if result.delivered > 0:
            self.factory.delivered += 1
            return _OK
        if result.queued:
            self.factory.queued += 1
            return _QUEUED
        self.factory.undelivered += 1
        return _FAIL

    def _ebPublished(self, failure: Failure) -> bytes:
        self.factory.errors += 1
        if failure.check(ShuttingDown):
            return _SHUTTING_DOWN
        if failure.check(StoreUnavailable):
            # logged once by the store's monitor, not once per push
            return b"error: " + str(failure.value).encode("utf-8")
        self.log.failure("line port push failed", failure)
        return _INTERNAL

    # -- answering, in order -------------------------------------------------

    def _answerError(self, answer: bytes) -> None:
        """
        Answer a line that needs no broker, after every earlier answer.
        """
        self.factory.errors += 1
        self._pending.append([answer])
        self._flush()

    def _fill(self, answer: bytes, slot: list[bytes | None]) -> None:
        slot[0] = answer
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending and pending[0][0] is not None:
            answer = pending.popleft()[0]
            if not self._lost:
                self.sendLine(cast(bytes, answer))
        if len(pending) <= MAX_PENDING // 2:
            self._resumeReading("pending")
        if self._readClosed and not pending and not self._lost:
            self.flushOutgoing()
            self.transport.loseConnection()

    # -- answering: one write per reactor turn -------------------------------

    _outgoing: list[bytes] | None = None

    def sendLine(self, line: bytes) -> None:
        """
        Queue an answer for the end of this reactor turn, with the others.
        """
        writer = self.factory.writer
        if writer is None:
            self.transport.write(line + b"\n")
        else:
            writer.write(self, line + b"\n")

    def flushOutgoing(self) -> None:
        """
        Send the answers this turn queued (L{TurnWriter} calls this).
        """
        outgoing, self._outgoing = self._outgoing, None
        if outgoing and not self._lost:
            sendNow(self.transport, outgoing)

    # -- flow control --------------------------------------------------------

    def _pauseReading(self, reason: str) -> None:
        if not self._pausedBy and not self._lost:
            self.paused = True
            self.transport.pauseProducing()
        self._pausedBy.add(reason)

    def _resumeReading(self, reason: str) -> None:
        if reason not in self._pausedBy:
            return
        self._pausedBy.discard(reason)
        if not self._pausedBy and not self._lost:
            self.paused = False
            self.transport.resumeProducing()
            self.dataReceived(b"")

    def pauseProducing(self) -> None:
        """
        The backend is not reading its answers: stop reading its requests.
        """
        self._pauseReading("writes")

    def resumeProducing(self) -> None:
        """
        The answers drained: read requests again.
        """
        self._resumeReading("writes")

    def stopProducing(self) -> None:
        """
        The transport is going away: nothing more will be answered.
        """
        self._lost = True


class LinePushFactory(Factory[LinePushProtocol]):
    """
    Builds L{LinePushProtocol}s sharing one broker and one set of counters.

    @ivar pushes: request lines published to the broker.
    @ivar delivered: pushes answered ``ok``.
    @ivar queued: pushes answered ``queued`` (kept for a uid without connections).
    @ivar undelivered: pushes answered ``fail`` (nobody connected).
    @ivar errors: lines answered ``error: ...`` (malformed, overlong, or the
        broker failed).
    @ivar connections: backend connections open now.
    """

    protocol = LinePushProtocol

    def __init__(
        self, broker: IBroker, maxLineLength: int = 65536, writer: TurnWriter | None = None, maxUids: int | None = None
    ) -> None:
        """
        @param broker: where pushes go.
        @param maxLineLength: the longest line accepted, in bytes without its
            line ending; longer lines are answered with an error and skipped.
        @param maxUids: the most uids one line may name; a line naming more
            is answered with an error and pushes nothing.
        @param writer: if given, the answers of one reactor turn leave in one
            C{send()} (L{realtime.delivery.writer}), as the pushes they answer do.
        """
        self.broker = broker
        self.writer = writer
        #: the broker's synchronous fast path, if it has one (L{Router.pushNow})
        self.pushNow = getattr(broker, "pushNow", None)
        self.maxLineLength = maxLineLength
        self.maxUids = maxUids
        self.pushes = 0
        self.delivered = 0
        self.queued = 0
        self.undelivered = 0
        self.errors = 0
        self.connections = 0

    def buildProtocol(self, addr: Any) -> LinePushProtocol:
        """
        A protocol that accepts lines up to C{maxLineLength} bytes.
        """
        p: LinePushProtocol = self.protocol()
        p.factory = self
        p.MAX_LENGTH = self.maxLineLength
        return p
