"""
Fuzzing the line port: every line gets exactly one documented answer line.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.api import targets
from realtime.api.targets import LineError, parseLine
from realtime.broker.memory import MemoryBroker
from realtime.core.jsoncodec import decodeQuickly
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.values import ToAll, ToUids
from tests.fakes import FakeSession
from tests.fuzz.support import anyText, fuzz, noTracebacks, objectsWith, values
from tests.test_api_lineproto import answers, connect

#: every answer the README documents
ANSWER = re.compile(rb"ok|fail|queued|error: .+")

lineTexts = objectsWith({"uid": st.one_of(anyText, st.lists(anyText, max_size=3), st.integers()), "broadcast": values})
lines = st.one_of(
    lineTexts.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
)


class LinePortFuzzTests(SynchronousTestCase):
    """
    One connection to the line port, fed every generated line in turn.
    """

    def setUp(self) -> None:
        self.registry = SessionRegistry()
        self.registry.add(FakeSession("u1"))
        self.broker = MemoryBroker(self.registry, Fanout(Clock()))
        self.factory, self.proto, self.transport = connect(self.broker, maxLineLength=1 << 20)
        # past the first line, which alone is checked for an HTTP request line
        self.proto.dataReceived(b'{"uid":"u1"}\n')
        self.assertEqual(answers(self.transport), [b"ok"])

    @fuzz
    @given(lines)
    @example(b'{"uid": null, "broadcast": true}')
    @example(b'{"uid": "a", "broadcast": 1}')
    @example(b'{"broadcast": 123456789012345678901234567890}')
    @example(b'{"uid": 123456789012345678901234567890}')
    def test_quickReadingAgrees(self, line: bytes) -> None:
        """
        L{parseLine} answers every line as it does when orjson is not asked
        (L{realtime.core.jsoncodec.decodeQuickly} refusing all): the same
        target or the same error.
        """

        def outcome() -> object:
            try:
                return parseLine(line)
            except LineError as e:
                return ("error", str(e))

        quick = outcome()
        # by hand, not self.patch: that one undoes only after every example
        targets.decodeQuickly = lambda data: None
        try:
            slow = outcome()
        finally:
            targets.decodeQuickly = decodeQuickly
        self.assertEqual(slow, quick)

    @fuzz
    @given(lines)
    def test_parseLine(self, line: bytes) -> None:
        """
        L{parseLine} gives a target or raises L{LineError}, nothing else.
        """
        try:
            target = parseLine(line)
        except LineError as e:
            self.assertTrue(str(e))
        else:
            self.assertIsInstance(target, (ToUids, ToAll))

    @fuzz
    @given(st.lists(lines, min_size=1, max_size=4))
    def test_connection(self, batch: list[bytes]) -> None:
        """
        Each line that is not blank (split as the port splits them) gets one
        documented answer, nothing is logged, and a valid line is then still
        answered C{ok} on the same connection.
        """
        data = b"".join(line.replace(b"\n", b" ") + b"\n" for line in batch)
        # blank lines (whitespace only) are not answered
        expected = sum(1 for line in data.split(b"\n")[:-1] if line.strip())
        with noTracebacks():
            self.proto.dataReceived(data + b'{"uid":"u1"}\n')
            got = answers(self.transport)
        self.assertFalse(self.transport.disconnecting, got)
        self.assertEqual(len(got), expected + 1, got)
        for answer in got:
            self.assertTrue(ANSWER.fullmatch(answer), answer)
        self.assertEqual(got[-1], b"ok")
