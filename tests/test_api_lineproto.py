"""
Tests for L{realtime.api.lineproto}: the Workerman-compatible line port.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from realtime.api.lineproto import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    LineError,
    LinePushFactory,
    LinePushProtocol,
    parseLine,
)
from realtime.broker import BrokerUnavailable
from realtime.broker.memory import MemoryBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.writer import TurnWriter
from realtime.interfaces import IBroker, IPublisher
from realtime.values import Envelope, PushResult, ToAll, ToUids
from tests.fakes import FakeSession, ManualBatchPublisher, ManualBroker


@implementer(IBroker)
class RaisingBroker(ManualBroker):
    """
    A broker whose publish raises instead of returning a Deferred.
    """

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        raise RuntimeError("broker is broken")


class CountingTransport(StringTransport):
    """
    Counts the writes.
    """

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class PartlyAtOnce(ManualBroker):
    """
    Answers pushes to uid C{fast} at once, the others when the test says.
    """

    def publish(self, envelope: Envelope) -> Any:
        if envelope.target == ToUids(("fast",)):
            return PushResult(1, {"fast": 1})
        return ManualBroker.publish(self, envelope)


def connect(
    broker: IBroker, maxLineLength: int = 65536, writer: TurnWriter | None = None
) -> tuple[LinePushFactory, LinePushProtocol, StringTransport]:
    """
    A line-port connection on an in-memory transport.
    """
    factory = LinePushFactory(broker, maxLineLength, writer)
    proto = factory.buildProtocol(None)
    transport = CountingTransport()
    proto.makeConnection(transport)
    return factory, proto, transport


def answers(transport: StringTransport) -> list[bytes]:
    """
    The answer lines written so far, and forget them.
    """
    value = transport.value()
    transport.clear()
    return value.split(b"\n")[:-1]


class FakeBrokerTests(SynchronousTestCase):
    """
    The hand-driven brokers provide the interfaces they stand in for.
    """

    def test_verified(self) -> None:
        """
        L{ManualBroker}, L{RaisingBroker} and L{PartlyAtOnce} provide
        L{IPublisher}, what the line port pushes through.
        """
        for fake in (ManualBroker(), RaisingBroker(), PartlyAtOnce()):
            self.assertTrue(verifyObject(IPublisher, fake))
            self.assertTrue(verifyObject(IBroker, fake))


class ParseLineTests(SynchronousTestCase):
    """
    L{parseLine} turns a request line into a target or a L{LineError}.
    """

    def test_targets(self) -> None:
        """
        A uid, a list of uids, an integer uid and a broadcast.
        """
        self.assertEqual(parseLine(b'{"uid": "uid1", "percent": "88%"}'), ToUids(("uid1",)))
        self.assertEqual(parseLine(b'{"uid": ["a", "b"]}'), ToUids(("a", "b")))
        self.assertEqual(parseLine(b'{"uid": 42}'), ToUids(("42",)))
        self.assertEqual(parseLine(b'{"broadcast": true, "x": 1}'), ToAll())
        self.assertEqual(parseLine(b'{"uid": "u", "broadcast": false}'), ToUids(("u",)))

    def test_errors(self) -> None:
        """
        Each malformed line raises a L{LineError} naming its problem.
        """
        uidType = '"uid" must be a non-empty string or a list of them'
        cases = {
            b"not json": "invalid JSON (Expecting value at column 1)",
            b'{"uid": "u1"': "invalid JSON (Expecting ',' delimiter at column 13)",
            b"[1, 2]": "expected a JSON object",
            b'"uid1"': "expected a JSON object",
            b'{"percent": "88%"}': 'missing "uid" (or "broadcast": true)',
            b'{"broadcast": false}': 'missing "uid" (or "broadcast": true)',
            b'{"uid": "u", "broadcast": true}': 'give either "uid" or "broadcast": true, not both',
            b'{"uid": null}': uidType,
            b'{"uid": 1.5}': uidType,
            b'{"uid": true}': uidType,
            b'{"uid": ""}': uidType,
            b'{"uid": []}': uidType,
            b'{"uid": ["a", 2.5]}': uidType,
            b'{"uid": {"a": 1}}': uidType,
            b'{"uid": "\\ud800"}': '"uid" is not valid Unicode',
            b"\xff\xfe{}": "line is not UTF-8",
            b"[" * 100000: "invalid JSON (nested too deeply)",
            b'{"uid": "u1", "data": NaN}': "invalid JSON (NaN is not valid JSON)",
            b'{"uid": "u1", "data": [Infinity]}': "invalid JSON (Infinity is not valid JSON)",
        }
        for line, message in cases.items():
            with self.assertRaises(LineError, msg=line[:40]) as caught:
                parseLine(line)
            self.assertEqual(str(caught.exception), message)

    def test_integerUidBeyond64Bits(self) -> None:
        """
        An integer uid too long for 64 bits keeps every digit: orjson, which
        reads most lines, would make it a float, so such a line is read by
        the standard library's parser.
        """
        digits = "123456789012345678901234567890"
        self.assertEqual(parseLine(b'{"uid": ' + digits.encode() + b"}"), ToUids((digits,)))
        self.assertEqual(parseLine(b'{"uid": [' + digits.encode() + b', "a"]}'), ToUids((digits, "a")))

    def test_hugeInteger(self) -> None:
        """
        An integer too long for Python to convert is invalid JSON, not a
        crash.
        """
        with self.assertRaises(LineError) as caught:
            parseLine(b'{"uid": ' + b"1" * 5000 + b"}")
        self.assertTrue(str(caught.exception).startswith("invalid JSON ("))


class MemoryBrokerLineTests(SynchronousTestCase):
    """
    The line port against the real L{MemoryBroker}, observed through
    L{FakeSession}s.
    """

    def setUp(self) -> None:
        self.registry = SessionRegistry()
        self.broker = MemoryBroker(self.registry, Fanout(Clock()))
        self.factory, self.proto, self.transport = connect(self.broker)

    def session(self, uid: str) -> FakeSession:
        """
        A session of C{uid}, added to the registry.
        """
        s = FakeSession(uid)
        self.registry.add(s)
        return s

    def test_ok(self) -> None:
        """
        A line addressed to a connected uid is pushed, as the whole line, to
        every session of that uid, and answered C{ok}.
        """
        a, b, other = self.session("uid1"), self.session("uid1"), self.session("uid2")
        line = b'{"uid":"uid1","percent":"88%"}'
        self.proto.dataReceived(line + b"\n")
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(a.sent, [(line, False)])
        self.assertEqual(b.texts, ['{"uid":"uid1","percent":"88%"}'])
        self.assertEqual(other.sent, [])
        self.assertEqual((self.factory.pushes, self.factory.delivered, self.factory.undelivered), (1, 1, 0))

    def test_payloadIsTheLineVerbatim(self) -> None:
        """
        The pushed text is the line exactly as written (spacing, key order,
        escapes, non-ASCII), not a re-encoding of it.
        """
        s = self.session("uid1")
        line = '{ "percent" : "88%",  "uid" : "uid1", "note": "caf\u00e9 \\u00e9" }'.encode()
        self.proto.dataReceived(line + b"\n")
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(s.sent, [(line, False)])

    def test_fail(self) -> None:
        """
        A line addressed to a uid with no connection is answered C{fail}.
        """
        self.session("someoneElse")
        self.proto.dataReceived(b'{"uid":"uid1"}\n')
        self.assertEqual(answers(self.transport), [b"fail"])
        self.assertEqual((self.factory.pushes, self.factory.delivered, self.factory.undelivered), (1, 0, 1))

    def test_listOfUids(self) -> None:
        """
        A list of uids is C{ok} when any of them got it, C{fail} when none.
        """
        a = self.session("a")
        self.proto.dataReceived(b'{"uid":["nobody","a"]}\n{"uid":["x","y"]}\n')
        self.assertEqual(answers(self.transport), [b"ok", b"fail"])
        self.assertEqual(a.texts, ['{"uid":["nobody","a"]}'])

    def test_tooManyUids(self) -> None:
        """
        A line naming more uids than the factory's limit is answered with an
        error line naming the limit, pushes nothing, and the connection goes
        on; exactly the limit is pushed.
        """
        a = self.session("a")
        self.factory.maxUids = 2
        self.proto.dataReceived(b'{"uid":["a","b","c"]}\n{"uid":["b","a"]}\n')
        self.assertEqual(
            answers(self.transport),
            [b"error: too many uids (3; at most 2 per push, --max-uids-per-push)", b"ok"],
        )
        self.assertEqual(a.texts, ['{"uid":["b","a"]}'])

    def test_integerUid(self) -> None:
        """
        An integer uid, as PHP encodes numeric ids, reaches the sessions of
        its decimal text.
        """
        s = self.session("42")
        self.proto.dataReceived(b'{"uid":42,"n":1}\n')
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(s.texts, ['{"uid":42,"n":1}'])

    def test_broadcast(self) -> None:
        """
        C{"broadcast": true} pushes the line to every session.
        """
        a, b = self.session("a"), self.session("b")
        line = b'{"broadcast":true,"news":"hi"}'
        self.proto.dataReceived(line + b"\n")
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual((a.sent, b.sent), ([(line, False)], [(line, False)]))

    def test_broadcastToNobody(self) -> None:
        """
        A broadcast nobody receives is answered C{fail}.
        """
        self.proto.dataReceived(b'{"broadcast":1}\n')
        self.assertEqual(answers(self.transport), [b"fail"])

    def test_crlf(self) -> None:
        """
        A line ending in CRLF is pushed without its CR.
        """
        s = self.session("u1")
        self.proto.dataReceived(b'{"uid":"u1"}\r\n')
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(s.texts, ['{"uid":"u1"}'])

    def test_emptyLinesIgnored(self) -> None:
        """
        Empty and blank lines get no answer.
        """
        self.session("u1")
        self.proto.dataReceived(b'\n\r\n  \n{"uid":"u1"}\n\n')
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(self.factory.errors, 0)

    def test_byteByByte(self) -> None:
        """
        Lines split across many reads are answered the same way.
        """
        s = self.session("u1")
        for byte in b'{"uid":"u1"}\r\nnope\n{"uid":"u2"}\n':
            self.proto.dataReceived(bytes([byte]))
        self.assertEqual(
            answers(self.transport),
            [b"ok", b"error: invalid JSON (Expecting value at column 1)", b"fail"],
        )
        self.assertEqual(s.texts, ['{"uid":"u1"}'])

    def test_malformedThenUsable(self) -> None:
        """
        Every malformed line gets exactly one error line, and the connection
        keeps working: the good line after it is answered C{ok}.
        """
        s = self.session("u1")
        cases = [
            (b"not json", b"error: invalid JSON (Expecting value at column 1)"),
            (b"[1]", b"error: expected a JSON object"),
            (b'{"percent":"88%"}', b'error: missing "uid" (or "broadcast": true)'),
            (b'{"uid":1.5}', b'error: "uid" must be a non-empty string or a list of them'),
            (b'{"uid":["a",null]}', b'error: "uid" must be a non-empty string or a list of them'),
            (b"\xc3\x28", b"error: line is not UTF-8"),
        ]
        for line, error in cases:
            self.proto.dataReceived(line + b'\n{"uid":"u1"}\n')
            self.assertEqual(answers(self.transport), [error, b"ok"], line)
            self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(s.sent), len(cases))
        self.assertEqual(self.factory.errors, len(cases))
        self.assertEqual(self.factory.pushes, len(cases))


class LongLineTests(SynchronousTestCase):
    """
    An overlong line is reported once and skipped; the connection survives.
    """

    def setUp(self) -> None:
        self.registry = SessionRegistry()
        self.session = FakeSession("u1")
        self.registry.add(self.session)
        broker = MemoryBroker(self.registry, Fanout(Clock()))
        self.factory, self.proto, self.transport = connect(broker, maxLineLength=100)

    def test_overlongCompleteLine(self) -> None:
        """
        A complete line over the limit is answered with one error line, and
        the line after it in the same read is handled.
        """
        longLine = b'{"uid":"u1","x":"' + b"x" * 200 + b'"}'
        self.proto.dataReceived(longLine + b'\n{"uid":"u1"}\n')
        self.assertEqual(answers(self.transport), [b"error: line longer than 100 bytes", b"ok"])
        self.assertEqual(self.session.texts, ['{"uid":"u1"}'])
        self.assertFalse(self.transport.disconnecting)

    def test_overlongAcrossReads(self) -> None:
        """
        A line that grows past the limit over several reads is reported once,
        is not buffered while it keeps coming, and reading resumes after its
        newline.
        """
        self.proto.dataReceived(b'{"uid":"u1","x":"' + b"x" * 150)
        self.assertEqual(answers(self.transport), [b"error: line longer than 100 bytes"])
        for _ in range(100):
            self.proto.dataReceived(b"y" * 1000)
            self.assertEqual(self.proto.clearLineBuffer(), b"")
        self.proto.dataReceived(b'yy"}\n{"uid":"u1"}\n')
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(self.session.texts, ['{"uid":"u1"}'])
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.factory.errors, 1)

    def test_exactlyAtLimit(self) -> None:
        """
        A line of exactly the limit is accepted, with or without a CR.
        """
        line = b'{"uid":"u1","x":"' + b"x" * (100 - 19) + b'"}'
        self.assertEqual(len(line), 100)
        self.proto.dataReceived(line[:50])
        self.proto.dataReceived(line[50:] + b"\r")
        self.proto.dataReceived(b"\n" + line + b"\n")
        self.assertEqual(answers(self.transport), [b"ok", b"ok"])

    def test_oneOverLimit(self) -> None:
        """
        One byte over the limit is refused.
        """
        line = b'{"uid":"u1","x":"' + b"x" * (101 - 19) + b'"}'
        self.assertEqual(len(line), 101)
        self.proto.dataReceived(line + b"\r\n")
        self.assertEqual(answers(self.transport), [b"error: line longer than 100 bytes"])


class OrderingTests(SynchronousTestCase):
    """
    Answers leave in the order the lines came, whatever order the broker
    answers in.
    """

    def setUp(self) -> None:
        self.broker = ManualBroker()
        self.factory, self.proto, self.transport = connect(self.broker)

    def test_outOfOrder(self) -> None:
        """
        Three pushes answered by the broker last-first are answered to the
        backend first-first, and an error line between them waits its turn.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\nbad\n{"uid":"c"}\n')
        self.assertEqual([e.target for e, _ in self.broker.published], [ToUids(("a",)), ToUids(("b",)), ToUids(("c",))])
        [(ea, da), (eb, db), (ec, dc)] = self.broker.published
        self.assertEqual(ea.payload, b'{"uid":"a"}')
        dc.callback(PushResult(1, {"c": 1}))
        db.callback(PushResult(2, {"b": 2}))
        self.assertEqual(self.transport.value(), b"")
        da.callback(PushResult(0, {"a": 0}))
        self.assertEqual(
            answers(self.transport),
            [b"fail", b"ok", b"error: invalid JSON (Expecting value at column 1)", b"ok"],
        )

    def test_answeredAtOnceWaitsItsTurn(self) -> None:
        """
        A push the publisher answers at once, after one it answers later,
        is answered after it: one path, one order.
        """
        broker = PartlyAtOnce()
        _, proto, transport = connect(broker)
        proto.dataReceived(b'{"uid":"slow"}\n{"uid":"fast"}\n')
        self.assertEqual(transport.value(), b"")
        broker.published[0][1].callback(PushResult(0, {"slow": 0}))
        self.assertEqual(answers(transport), [b"fail", b"ok"])
        proto.dataReceived(b'{"uid":"fast"}\n')
        self.assertEqual(answers(transport), [b"ok"])

    def test_partialFlush(self) -> None:
        """
        Answers leave as soon as everything before them is answered.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n{"uid":"c"}\n')
        [(_, da), (_, db), (_, dc)] = self.broker.published
        db.callback(PushResult(1))
        da.callback(PushResult(1))
        self.assertEqual(answers(self.transport), [b"ok", b"ok"])
        dc.callback(PushResult(0))
        self.assertEqual(answers(self.transport), [b"fail"])

    def test_brokerFailure(self) -> None:
        """
        A failed publish is logged and answered C{error: internal error}; the
        connection stays usable.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n')
        self.broker.published[0][1].errback(RuntimeError("redis went away"))
        self.assertEqual(answers(self.transport), [b"error: internal error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.proto.dataReceived(b'{"uid":"a"}\n')
        self.broker.published[1][1].callback(PushResult(1))
        self.assertEqual(answers(self.transport), [b"ok"])
        self.assertEqual(self.factory.errors, 1)

    def test_unwordableAnswerStillAnswered(self) -> None:
        """
        A result the line port cannot word (a publisher's bug) is logged and
        answered C{error: internal error} in its place, and the answers
        behind it are not held back.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n')
        [(_, da), (_, db)] = self.broker.published
        db.callback(PushResult(1))
        da.callback(object())
        self.assertEqual(answers(self.transport), [b"error: internal error", b"ok"])
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    def test_brokerRaises(self) -> None:
        """
        A broker that raises synchronously is answered like one that fails.
        """
        factory, proto, transport = connect(RaisingBroker())
        proto.dataReceived(b'{"uid":"a"}\n')
        self.assertEqual(answers(transport), [b"error: internal error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_answersAfterDisconnectDropped(self) -> None:
        """
        A push still in flight when the backend disconnects completes, but
        nothing is written for it.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n')
        self.proto.connectionLost(None)
        self.broker.published[0][1].callback(PushResult(1))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual((self.factory.delivered, self.factory.connections), (1, 0))


class FlowControlTests(SynchronousTestCase):
    """
    A backend cannot make the port hold unbounded work.
    """

    def setUp(self) -> None:
        self.broker = ManualBroker()
        self.factory, self.proto, self.transport = connect(self.broker)

    def test_tooManyPending(self) -> None:
        """
        After C{MAX_PENDING} unanswered pushes the connection is no longer
        read; the lines already received wait and are handled once half of
        the answers are out.
        """
        self.assertIs(self.transport.producer, self.proto)
        extra = 5
        self.proto.dataReceived(b"".join(b'{"uid":"u%d"}\n' % i for i in range(MAX_PENDING + extra)))
        self.assertEqual(len(self.broker.published), MAX_PENDING)
        self.assertEqual(self.transport.producerState, "paused")
        for _, d in self.broker.published[: MAX_PENDING // 2 - 1]:
            d.callback(PushResult(1))
        self.assertEqual(self.transport.producerState, "paused")
        self.broker.published[MAX_PENDING // 2 - 1][1].callback(PushResult(1))
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.broker.published), MAX_PENDING + extra)
        for _, d in self.broker.published[MAX_PENDING // 2 :]:
            d.callback(PushResult(0))
        self.assertEqual(answers(self.transport), [b"ok"] * (MAX_PENDING // 2) + [b"fail"] * (MAX_PENDING // 2 + extra))

    def test_tooManyPendingBytes(self) -> None:
        """
        Pushes awaiting their answers hold at most about
        C{MAX_PENDING_BYTES} of lines, however few they are: past that the
        connection is no longer read, and it is again once half those bytes
        are answered.
        """
        line = b'{"uid":"u","x":"' + b"x" * 60000 + b'"}\n'
        self.proto.dataReceived(line * (MAX_PENDING_BYTES // len(line) + 5))
        held = len(self.broker.published)
        self.assertEqual(held, -(-MAX_PENDING_BYTES // (len(line) - 1)))
        self.assertLess(held, MAX_PENDING)
        self.assertEqual(self.transport.producerState, "paused")
        half = held - MAX_PENDING_BYTES // 2 // (len(line) - 1)
        for _, d in self.broker.published[: half - 1]:
            d.callback(PushResult(1))
        self.assertEqual(self.transport.producerState, "paused")
        self.broker.published[half - 1][1].callback(PushResult(1))
        self.assertEqual(self.transport.producerState, "producing")
        self.assertGreater(len(self.broker.published), held)

    def test_unreadAnswers(self) -> None:
        """
        While the transport says the backend is not reading its answers, its
        requests are not read either; they are once it catches up.
        """
        self.proto.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.proto.dataReceived(b'{"uid":"a"}\n')
        self.assertEqual(self.broker.published, [])
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.broker.published), 1)

    def test_bothReasons(self) -> None:
        """
        Reading resumes only when neither reason to pause holds.
        """
        self.proto.dataReceived(b"".join(b'{"uid":"u%d"}\n' % i for i in range(MAX_PENDING)))
        self.proto.pauseProducing()
        for _, d in self.broker.published:
            d.callback(PushResult(1))
        self.assertEqual(self.transport.producerState, "paused")
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_connectionCount(self) -> None:
        """
        The factory counts open backend connections.
        """
        self.assertEqual(self.factory.connections, 1)
        other = self.factory.buildProtocol(None)
        other.makeConnection(StringTransport())
        self.assertEqual(self.factory.connections, 2)
        other.connectionLost(None)
        self.assertEqual(self.factory.connections, 1)


class HalfCloseTests(SynchronousTestCase):
    """
    A backend that shuts down its sending side after the last line (``nc -N``)
    still gets every answer, then the connection closes.
    """

    def test_answersThenCloses(self) -> None:
        """
        Pending answers are written after the read side closes, and only then
        is the connection closed; a last line without a newline counts.
        """
        broker = ManualBroker()
        factory, proto, transport = connect(broker)
        self.assertTrue(IHalfCloseableProtocol.providedBy(proto))
        proto.dataReceived(b'{"uid": "a"}\n{"uid": "b"}')
        proto.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(broker.published), 2)
        broker.published[1][1].callback(PushResult(0))
        broker.published[0][1].callback(PushResult(1))
        self.assertEqual(answers(transport), [b"ok", b"fail"])
        self.assertTrue(transport.disconnecting)

    def test_nothingPending(self) -> None:
        """
        With nothing in flight, the connection closes at once.
        """
        factory, proto, transport = connect(ManualBroker())
        proto.readConnectionLost()
        self.assertTrue(transport.disconnecting)


class CrossProtocolTests(SynchronousTestCase):
    """
    HTTP sent to the line port (a browser made to POST by a hostile page)
    pushes nothing.
    """

    def test_httpRefused(self) -> None:
        """
        A first line that is an HTTP request line is answered with an error
        and the connection is closed before the body's JSON line is read.
        """
        broker = ManualBroker()
        factory, proto, transport = connect(broker)
        proto.dataReceived(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:5678\r\nContent-Type: text/plain\r\n\r\n" + b'{"uid": "victim"}\n'
        )
        self.assertEqual(answers(transport), [b"error: this is the line-JSON push port, not HTTP"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(broker.published, [])

    def test_onlyTheFirstLine(self) -> None:
        """
        Later lines are judged as JSON as usual.
        """
        factory, proto, transport = connect(ManualBroker())
        proto.dataReceived(b'{"uid": "a"}\nGET / HTTP/1.1\n')
        self.assertFalse(transport.disconnecting)


class TurnWriterTests(SynchronousTestCase):
    """
    With a L{TurnWriter}, the answers of one reactor turn leave in one write,
    in order, and before any close.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = SessionRegistry()
        self.registry.add(FakeSession("a"))
        self.broker = MemoryBroker(self.registry, Fanout(self.clock))
        self.writer = TurnWriter(self.clock)

    def test_oneWritePerTurn(self) -> None:
        """
        Answers wait for the end of the turn, then go out together.
        """
        factory, proto, transport = connect(self.broker, writer=self.writer)
        proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\nnot json\n{"uid":"a"}\n')
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0)
        self.assertEqual(answers(transport), [b"ok", b"fail", b"error: invalid JSON (Expecting value at column 1)", b"ok"])
        self.assertEqual(transport.writes, 1)

    def test_httpRefusedBeforeClosing(self) -> None:
        """
        The refusal of an HTTP request is written before the connection
        closes.
        """
        factory, proto, transport = connect(self.broker, writer=self.writer)
        proto.dataReceived(b"POST / HTTP/1.1\r\n")
        self.assertEqual(answers(transport), [b"error: this is the line-JSON push port, not HTTP"])
        self.assertTrue(transport.disconnecting)
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")

    def test_halfCloseAnswersFirst(self) -> None:
        """
        After the backend's half-close, every answer is written, then the
        connection closes.
        """
        factory, proto, transport = connect(self.broker, writer=self.writer)
        proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}')
        proto.readConnectionLost()
        self.assertEqual(answers(transport), [b"ok", b"fail"])
        self.assertTrue(transport.disconnecting)

    def test_lostConnection(self) -> None:
        """
        Answers queued when the connection is lost are dropped.
        """
        factory, proto, transport = connect(self.broker, writer=self.writer)
        proto.dataReceived(b'{"uid":"a"}\n')
        proto.connectionLost(None)
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")


class BatchedTests(SynchronousTestCase):
    """
    A factory that batches (a broker that answers later: Redis) publishes
    the pushes of each read as one batch and answers each in its place.
    """

    def setUp(self) -> None:
        self.publisher = ManualBatchPublisher()
        self.factory = LinePushFactory(self.publisher, batched=True)
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_oneBatchPerRead(self) -> None:
        """
        The lines of one read are one batch, in order, and nothing goes
        through the publisher one push at a time; a malformed line among
        them is answered in its place without joining the batch.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":\n{"uid":["b","c"]}\n')
        self.proto.dataReceived(b'{"uid":"d"}\n')
        self.assertEqual(self.publisher.published, [])
        [(first, d1), (second, d2)] = self.publisher.batches
        self.assertEqual([e.target for e in first], [ToUids(("a",)), ToUids(("b", "c"))])
        self.assertEqual(first[0].payload, b'{"uid":"a"}')
        self.assertEqual([e.target for e in second], [ToUids(("d",))])
        d2.callback([PushResult(1)])
        self.assertEqual(answers(self.transport), [])
        d1.callback([PushResult(1), PushResult(0, queued=("x",))])
        self.assertEqual(
            answers(self.transport), [b"ok", b"error: invalid JSON (Expecting value at column 8)", b"queued", b"ok"]
        )
        self.assertEqual((self.factory.delivered, self.factory.undelivered, self.factory.queued), (2, 0, 1))

    def test_broadcastAlone(self) -> None:
        """
        A broadcast is published alone, after the pushes read before it
        (their batch goes first) and before those after it.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"broadcast":true}\n{"uid":"b"}\n')
        [(first, d1), (second, d2)] = self.publisher.batches
        self.assertEqual([e.target for e in first], [ToUids(("a",))])
        [(broadcast, d)] = self.publisher.published
        self.assertEqual(broadcast.target, ToAll())
        self.assertEqual([e.target for e in second], [ToUids(("b",))])
        d2.callback([PushResult(1)])
        d.callback(PushResult(0))
        d1.callback([PushResult(1)])
        self.assertEqual(answers(self.transport), [b"ok", b"fail", b"ok"])

    def test_onePushFails(self) -> None:
        """
        A push of a batch that failed alone is answered as failed; the
        others as they came out.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n')
        self.publisher.batches[0][1].callback([Failure(BrokerUnavailable("broker unavailable (Redis: x)")), PushResult(1)])
        self.assertEqual(answers(self.transport), [b"error: broker unavailable (Redis: x)", b"ok"])
        self.assertEqual(self.factory.errors, 1)

    def test_batchFails(self) -> None:
        """
        A batch that failed as a whole answers every push of it as failed.
        """
        self.proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n')
        self.publisher.batches[0][1].errback(BrokerUnavailable("broker unavailable (Redis: down)"))
        self.assertEqual(answers(self.transport), [b"error: broker unavailable (Redis: down)"] * 2)

    def test_publishBatchRaises(self) -> None:
        """
        A publisher whose batch path raises is logged and every push of the
        batch answered C{error: internal error}.
        """
        self.publisher.publishBatch = lambda envelopes: 1 / 0  # type: ignore[assignment,method-assign]
        factory = LinePushFactory(self.publisher, batched=True)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n')
        self.assertEqual(answers(transport), [b"error: internal error"] * 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_pausedMidRead(self) -> None:
        """
        A read with more than C{MAX_PENDING} pushes is published up to the
        limit; the rest is read, as its own batch, once half are answered.
        """
        extra = 5
        self.proto.dataReceived(b"".join(b'{"uid":"u%d"}\n' % i for i in range(MAX_PENDING + extra)))
        [(first, d1)] = self.publisher.batches
        self.assertEqual(len(first), MAX_PENDING)
        self.assertEqual(self.transport.producerState, "paused")
        d1.callback([PushResult(1)] * MAX_PENDING)
        self.assertEqual(self.transport.producerState, "producing")
        [_, (second, d2)] = self.publisher.batches
        self.assertEqual([e.target for e in second], [ToUids((f"u{i}",)) for i in range(MAX_PENDING, MAX_PENDING + extra)])
        d2.callback([PushResult(0)] * extra)
        self.assertEqual(answers(self.transport), [b"ok"] * MAX_PENDING + [b"fail"] * extra)

    def test_answeredAtOnce(self) -> None:
        """
        A batch answered at once (a publisher publishing it one by one)
        is answered at once, and reading goes on.
        """
        self.publisher.publishBatch = lambda envelopes: succeed(  # type: ignore[assignment,method-assign]
            [PushResult(1) for _ in envelopes]
        )
        factory = LinePushFactory(self.publisher, batched=True)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n{"uid"')
        proto.dataReceived(b':"c"}\n')
        self.assertEqual(answers(transport), [b"ok"] * 3)

    def test_notBatchedByDefault(self) -> None:
        """
        Without C{batched}, a publisher with a batch path is still asked
        one push at a time (a broker that answers at once costs no
        Deferred that way).
        """
        factory, proto, transport = connect(self.publisher)
        proto.dataReceived(b'{"uid":"a"}\n{"uid":"b"}\n')
        self.assertEqual((len(self.publisher.published), self.publisher.batches), (2, []))
