"""
Tests for L{realtime.core.jsoncodec}, and hostile JSON against a real server.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import connect

from realtime.core.jsoncodec import JSONError, decode, encode
from tests.serverprocess import ServerProcess, api, linePush


class DecodeTests(SynchronousTestCase):
    """
    Strict decoding: JSON's grammar, no more, and errors that say why.
    """

    def test_asJsonLoads(self) -> None:
        """
        For JSON text, the fast path and the fallback give what C{json.loads}
        gives, errors (message and place) included.
        """
        for text in (
            '{"uid":"a"}',
            ' {"uid": "a"} ',
            '{"uid":"a"} x',
            '{"uid":"a"}{}',
            '{"uid": "a"',
            '{"a": [1, 2.5, null, true, "\\u00e9", "\\ud83d\\ude00"]}',
            "{" * 3 + "}",
            "[]",
            "",
        ):
            try:
                expected: object = json.loads(text)
            except json.JSONDecodeError as e:
                expected = (e.msg, e.lineno, e.colno)
            try:
                got: object = decode(text)
            except JSONError as e:
                got = (e.msg, e.lineno, e.colno)
            self.assertEqual(repr(got), repr(expected), text)

    def test_refused(self) -> None:
        """
        C{NaN}, C{Infinity}, nesting 100,000 deep (arrays, objects, inside
        an object) and an integer too long to convert are each a
        L{JSONError} (a C{ValueError}) with a precise message and no place.
        """
        for text, message in [
            ('{"a": NaN}', "NaN is not valid JSON"),
            ("[Infinity]", "Infinity is not valid JSON"),
            ("-Infinity", "-Infinity is not valid JSON"),
            ("[" * 100_000, "nested too deeply"),
            ('{"a":' * 100_000, "nested too deeply"),
            ("[{}," + "[" * 100_000, "nested too deeply"),
        ]:
            e = self.assertRaises(JSONError, decode, text)
            self.assertEqual((str(e), e.lineno, e.colno), (message, None, None))
        e = self.assertRaises(ValueError, decode, "1" * 5000)
        self.assertIn("integer string conversion", str(e))

    def test_errorText(self) -> None:
        """
        A positioned error reads with its line and column.
        """
        e = self.assertRaises(JSONError, decode, '{\n "a": }')
        self.assertEqual(str(e), "Expecting value at line 2 column 7")

    def test_deepButPossible(self) -> None:
        """
        Nesting a hundred deep is ordinary JSON and reads back.
        """
        text = "[" * 100 + "]" * 100
        self.assertEqual(encode(decode(text)), text.encode())


class EncodeTests(SynchronousTestCase):
    """
    Strict encoding: compact UTF-8 that any JSON parser reads.
    """

    def test_compact(self) -> None:
        """
        Compact separators, non-ASCII as UTF-8, surrogate pairs as the
        character they make.
        """
        self.assertEqual(encode({"a": [1, "é"], "b": None}), '{"a":[1,"é"],"b":null}'.encode())
        self.assertEqual(encode(decode('"\\ud83d\\ude00"')), '"\U0001f600"'.encode())

    def test_refused(self) -> None:
        """
        A lone surrogate anywhere (value or key), a float that is not
        finite, and nesting too deep to write are L{JSONError}s.
        """
        deep: list[object] = []
        inner = deep
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]  # type: ignore[assignment]
        for value, words in [
            ("\ud800", "not valid Unicode"),
            ({"a": ["ok", {"\udfff": 1}]}, "not valid Unicode"),
            (float("nan"), "NaN"),
            ([float("inf")], "out of range"),
            (deep, "nested too deeply"),
        ]:
            e = self.assertRaises(JSONError, encode, value)
            self.assertIn(words, str(e))


class HostileJsonServerTests(SynchronousTestCase):
    """
    The same inputs over real sockets: a real server answers each on every
    port with its documented error, logs no traceback, and keeps serving.
    """

    def setUp(self) -> None:
        self.server = ServerProcess(
            "--auth", "anonymous", "--routing", "channels", "--namespace", "room:*:public=true:publish=true"
        ).start()
        self.addCleanup(self.server.stop)

    def test_everyPort(self) -> None:
        """
        A channels client sends a request 100,000 deep, a ping with a lone
        surrogate id and a publish of C{NaN}: three error replies, then a
        ping answered on the same connection.  The HTTP API refuses lone
        surrogate data with 400, the line port C{NaN} with an error line.
        """
        with connect(self.server.url("/ws"), open_timeout=10, max_size=None) as ws:
            for request in (
                "[" * 100_000,
                '{"id":"\\ud800","op":"ping"}',
                '{"id":3,"op":"publish","channel":"room:1","data":NaN}',
                '{"id":4,"op":"ping"}',
            ):
                ws.send(request)
            replies = [json.loads(ws.recv(timeout=10)) for _ in range(4)]
        self.assertEqual(
            [(r["id"], r["ok"], r.get("error", {}).get("code")) for r in replies],
            [(None, False, "bad_json"), (None, False, "bad_request"), (None, False, "bad_json"), (4, True, None)],
        )
        status, body = api(self.server, "POST", "/api/publish", b'{"channel": "room:1", "data": "\\ud800"}')
        self.assertEqual((status, body["error"]["code"]), (400, "invalid_request"))
        [answer] = linePush(self.server.ports["push-port"], b'{"uid": "u1", "data": NaN}\n')
        self.assertEqual(answer, b"error: invalid JSON (NaN is not valid JSON)")
        self.assertNotIn("Traceback", self.server.output)
