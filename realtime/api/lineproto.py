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
    error: broker unavailable (Redis: Error 111 connecting to 127.0.0.1:6379. Connection refused.)
    error: shutting down
    error: internal error

``message store unavailable`` names what the store said; the push was not
queued (the server logs the fault once, and ``/readyz`` is 503 until the
store works again); ``broker unavailable``: the broker cannot reach Redis,
so the push reached nobody (``/readyz`` is 503 meanwhile).  ``shutting
down``: the server is stopping; push again in a moment, or to another node.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import fail
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime.api.targets import LineError, TooManyUids, parseLine, targetUids
from realtime.broker import BrokerUnavailable
from realtime.delivery.writer import TurnWriter, sendNow
from realtime.interfaces import IBatchPublisher, IPublisher
from realtime.store.health import ShuttingDown, StoreUnavailable
from realtime.values import Envelope, PushResult, ToUids

__all__ = [
    "LinePushFactory",
    "LinePushProtocol",
    "LineError",
    "TooManyUids",
    "parseLine",
    "targetUids",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
]

#: how many answers one connection may have outstanding before it is no longer
#: read from; it is read again once half of them are answered.  Deep enough
#: that a backend pipelining hundreds of pushes keeps the broker's next
#: pipeline filling while one is in flight (at 64 the line port waited for
#: each round trip to Redis: 20% fewer pushes/s over two nodes)
MAX_PENDING = 1024

#: how many bytes of pushes awaiting their answers one connection may hold
#: before it is no longer read from, whatever their number: 1,024 lines of
#: the server's 1 MiB limit would be a gigabyte
MAX_PENDING_BYTES = 1 << 20

_OK = b"ok"
_FAIL = b"fail"

#: the first line of an HTTP request (``POST / HTTP/1.1``)
HTTP_REQUEST_LINE = re.compile(rb"[A-Z]{3,10} \S+ HTTP/\d")
_QUEUED = b"queued"
_INTERNAL = b"error: internal error"
_SHUTTING_DOWN = b"error: shutting down"


@implementer(IPushProducer, IHalfCloseableProtocol)
class LinePushProtocol(LineReceiver):
    """
    One backend connection to the line port.

    Requests are published as soon as they arrive (on a broker that answers
    later, the pushes to uids of one read together, as one batch), but
    answered strictly in the order they came: a push the router answers at once (nearly every
    one) is answered at once unless earlier answers are still awaited;
    otherwise it takes a place in C{_pending}, and answers leave from its
    head only.  The
    connection stops being read while C{MAX_PENDING} answers are outstanding
    or while the backend is not reading its answers (the protocol is its own
    transport's producer), so a backend that floods the port cannot grow this
    process's memory.

    @ivar factory: the L{LinePushFactory}, for the publisher and the counters.
    """

    delimiter = b"\n"
    log = Logger()
    factory: LinePushFactory
    #: TCP, TLS or a Unix socket (Twisted types it as an optional
    #: C{ITransport}, which is not a producer)
    transport: Any

    def __init__(self) -> None:
        #: each answer awaited or waiting its turn, as [answer or None, bytes
        #: of its push]
        self._pending: deque[list[Any]] = deque()
        self._pendingBytes = 0
        #: this read's pushes and their answers' places, while the factory
        #: batches (L{LinePushFactory.publishBatch})
        self._batch: list[Envelope] = []
        self._batchSlots: list[list[Any]] = []
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
            if self._batch:
                # after reading is marked over: a batch answered at once may
                # resume reading, which reads what is left from the start
                self._publishBatch()

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
        if factory.publishBatch is not None and self._receiving:
            if type(target) is ToUids:
                # published with the rest of this read, when it is split
                self._batch.append(Envelope(target, line, False))
                self._batchSlots.append(self._awaitAnswer(len(line)))
                return
            if self._batch:
                # a broadcast alone (a batch would gain nothing on one push to
                # everyone), after the pushes read before it
                self._publishBatch()
        try:
            result = factory.publish(Envelope(target, line, False))
        except Exception:
            answer = self._failed(Failure())
        else:
            # PushResult, not Deferred (an ABC, slower to check): the hot path
            if not isinstance(result, PushResult):
                slot = self._awaitAnswer(len(line))
                # one callback pair per push, not a chain: at tens of
                # thousands of pushes a second each link of a chain shows
                result.addCallbacks(self._answerLater, self._failLater, callbackArgs=(slot,), errbackArgs=(slot,))
                return
            answer = self._answer(result)
        if self._pending:
            # answered already, but after the answers still awaited
            self._pending.append([answer, 0])
            self._flush()
        else:
            # the common case: answered at once, no Deferred per push
            self.sendLine(answer)

    def _awaitAnswer(self, size: int) -> list[Any]:
        """
        A place for the answer of a push of C{size} bytes, behind every
        answer awaited; reading stops while too many are.
        """
        slot: list[Any] = [None, size]
        self._pending.append(slot)
        self._pendingBytes += size
        if len(self._pending) >= MAX_PENDING or self._pendingBytes >= MAX_PENDING_BYTES:
            self._pauseReading("pending")
        return slot

    def _publishBatch(self) -> None:
        """
        Publish the pushes of one read as one batch: one Deferred for all of
        them, where each would otherwise cost its own and its callbacks.
        """
        envelopes, slots = self._batch, self._batchSlots
        self._batch, self._batchSlots = [], []
        publishBatch = self.factory.publishBatch
        try:
            if publishBatch is None:
                raise RuntimeError("the line port factory does not batch")
            published = publishBatch(envelopes)
        except Exception:
            published = fail()
        published.addCallbacks(self._answerBatch, self._failBatch, callbackArgs=(slots,), errbackArgs=(slots,))

    def _answerBatch(self, outcomes: list[Any], slots: list[list[Any]]) -> None:
        for outcome, slot in zip(outcomes, slots, strict=True):
            if type(outcome) is PushResult:
                # nearly every push: _answer cannot fail on a PushResult, so
                # without _worded's guard around it
                slot[0] = self._answer(outcome)
                continue
            word = self._failed if isinstance(outcome, Failure) else self._answer
            slot[0] = self._worded(word, outcome)
        self._flush()

    def _failBatch(self, failure: Failure, slots: list[list[Any]]) -> None:
        for slot in slots:
            slot[0] = self._worded(self._failed, failure)
        self._flush()

    def _answer(self, result: PushResult) -> bytes:
        """
        The answer line to a push, counted: the one place the line port
        words a C{PushResult}, whether it came at once or later.
        """
        factory = self.factory
        if result.delivered > 0:
            factory.delivered += 1
            return _OK
        if result.queued:
            factory.queued += 1
            return _QUEUED
        factory.undelivered += 1
        return _FAIL

    def _failed(self, failure: Failure) -> bytes:
        """
        The answer line to a push that failed, counted (and logged unless
        the store's monitor already said it).
        """
        self.factory.errors += 1
        if failure.check(ShuttingDown):
            return _SHUTTING_DOWN
        if failure.check(StoreUnavailable, BrokerUnavailable):
            # logged once by the store's monitor or the broker, not once per push
            return b"error: " + str(failure.value).encode("utf-8")
        self.log.failure("line port push failed", failure)
        return _INTERNAL

    # -- answering, in order -------------------------------------------------

    def _answerError(self, answer: bytes) -> None:
        """
        Answer a line that pushes nothing, after every earlier answer.
        """
        self.factory.errors += 1
        self._pending.append([answer, 0])
        self._flush()

    def _answerLater(self, result: PushResult, slot: list[Any]) -> None:
        self._fill(self._answer, result, slot)

    def _failLater(self, failure: Failure, slot: list[Any]) -> None:
        self._fill(self._failed, failure, slot)

    def _fill(self, word: Callable[[Any], bytes], outcome: Any, slot: list[Any]) -> None:
        slot[0] = self._worded(word, outcome)
        self._flush()

    def _worded(self, word: Callable[[Any], bytes], outcome: Any) -> bytes:
        try:
            return word(outcome)
        except Exception:
            # the line still gets its answer, or every later one would wait
            self.log.failure("could not answer a line port request")
            return _INTERNAL

    def _flush(self) -> None:
        pending = self._pending
        ready = []
        while pending and pending[0][0] is not None:
            answer, size = pending.popleft()
            self._pendingBytes -= size
            ready.append(answer)
        if ready and not self._lost:
            # the answers ready, queued as one write (a batch's are all
            # ready at once)
            ready.append(b"")
            self._queueWrite(b"\n".join(ready))
        if len(pending) <= MAX_PENDING // 2 and self._pendingBytes <= MAX_PENDING_BYTES // 2:
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
        self._queueWrite(line + b"\n")

    def _queueWrite(self, data: bytes) -> None:
        writer = self.factory.writer
        if writer is None:
            self.transport.write(data)
        else:
            writer.write(self, data)

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
    Builds L{LinePushProtocol}s sharing one publisher and one set of counters.

    @ivar pushes: request lines published.
    @ivar delivered: pushes answered ``ok``.
    @ivar queued: pushes answered ``queued`` (kept for a uid without connections).
    @ivar undelivered: pushes answered ``fail`` (nobody connected).
    @ivar errors: lines answered ``error: ...`` (malformed, overlong, or the
        push failed).
    @ivar connections: backend connections open now.
    """

    protocol = LinePushProtocol

    def __init__(
        self,
        publisher: IPublisher,
        maxLineLength: int = 65536,
        writer: TurnWriter | None = None,
        maxUids: int | None = None,
        batched: bool = False,
    ) -> None:
        """
        @param publisher: where pushes go (the router, or its instrumented
            view).
        @param maxLineLength: the longest line accepted, in bytes without its
            line ending; longer lines are answered with an error and skipped.
        @param maxUids: the most uids one line may name; a line naming more
            is answered with an error and pushes nothing.
        @param writer: if given, the answers of one reactor turn leave in one
            C{send()} (L{realtime.delivery.writer}), as the pushes they answer do.
        @param batched: publish the pushes of each read as one batch
            (C{publisher} must provide L{IBatchPublisher}): worth it when its
            broker answers later (Redis), where each push would otherwise
            cost a Deferred; a broker that answers at once costs none.
        """
        self.publisher = publisher
        #: bound once: every line calls it
        self.publish = publisher.publish
        self.publishBatch = IBatchPublisher(publisher).publishBatch if batched else None
        self.writer = writer
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
