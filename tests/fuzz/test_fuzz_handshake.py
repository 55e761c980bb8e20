"""
Fuzzing the opening handshake: the fast path (L{realtime.websocket.handshake}) answers
every request head exactly as Autobahn's own path does, and never crashes.
"""

from __future__ import annotations

import re

from hypothesis import event, given, note
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from realtime.websocket.handshake import readUpgrade
from tests import test_websocket_handshake
from tests.fuzz.support import fuzz, noTracebacks
from tests.support import KEY, AutobahnPath

#: a finished handshake: switched, refused with an HTTP error, or (no
#: Upgrade header) Autobahn's status page
ANSWERED = re.compile(rb"HTTP/1\.1 (101|200|[45]\d\d) ")

COMMON = [
    (b"Host", b"example.com:8080"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", KEY.encode()),
    (b"Sec-WebSocket-Version", b"13"),
]
OPTIONAL = [
    (b"Origin", b"https://app.example.com"),
    (b"Origin", b"null"),
    (b"Sec-WebSocket-Protocol", b"chat, wx.u1.1700000000.n0nce.abcdef"),
    (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
    (b"Authorization", b"Bearer x.y.z"),
]
tokens = st.sampled_from([b"", b"13", b"8", b"websocket", b"Upgrade", b"keep-alive, Upgrade", b"x" * 30, b"\xff\x00"])
values = st.one_of(tokens, st.binary(max_size=20))


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """
    A request head near a valid upgrade: its parts dropped, doubled,
    re-cased or replaced, the line endings varied.
    """
    method = draw(st.sampled_from([b"GET"] * 8 + [b"get", b"POST", b"GET ", b""]))
    target = draw(
        st.one_of(
            st.sampled_from([b"/", b"/ws?token=a.b.c", b"/?uid=u1&timestamp=1&nonce=n&signature=s", b"//x", b"/#f", b"*"]),
            st.sampled_from([b"/"]),
            st.sampled_from([b"/ws?uid=u1"]),
            st.binary(max_size=20).map(lambda b: b"/" + b),
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2", b"http/1.1", b""]))
    headers = []
    for name, value in COMMON + draw(st.lists(st.sampled_from(OPTIONAL), max_size=3)):
        how = draw(st.sampled_from(["keep"] * 16 + ["drop", "twice", "case", "value"]))
        if how == "drop":
            continue
        if how == "case":
            name = name.upper() if draw(st.booleans()) else name.lower()
        if how == "value":
            value = draw(values)
        headers.append(name + draw(st.sampled_from([b": "] * 8 + [b":", b" : ", b":  "])) + value)
        if how == "twice":
            headers.append(name + b": " + draw(values))
    names = st.one_of(st.sampled_from([b"X-Forwarded-For", b"Cookie", b"Sec-WebSocket-Extensions"]), st.binary(max_size=8))
    extra = st.tuples(names, st.one_of(tokens, tokens, values))
    headers += [k + b": " + v for k, v in draw(st.lists(extra, max_size=2)) if draw(st.integers(0, 2))]
    newline = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n"]))
    head = newline.join([method + b" " + target + b" " + version, *headers]) + b"\r\n\r\n"
    if draw(st.integers(0, 3)):
        return head
    at = draw(st.integers(0, len(head)))
    return head[:at] + draw(st.binary(max_size=6)) + head[at + draw(st.integers(0, 4)) :]


class HandshakeFuzzTests(SynchronousTestCase):
    """
    Every generated head, answered by both paths.
    """

    setUp = test_websocket_handshake.SameAsAutobahnTests.setUp
    answer = test_websocket_handshake.SameAsAutobahnTests.answer
    origins = test_websocket_handshake.SameAsAutobahnTests.origins

    @fuzz
    @given(heads())
    def test_sameAsAutobahn(self, head: bytes) -> None:
        """
        The same bytes back from both paths, a switch or an HTTP error once
        the head is complete, and no traceback.
        """
        note(repr(head))
        with noTracebacks():
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                readUpgrade(head, end)
            ours, seenByOurs, _ = self.answer(None, head)
            theirs, seenByTheirs, _ = self.answer(AutobahnPath, head)
        self.assertEqual(ours, theirs)
        self.assertEqual(seenByOurs, seenByTheirs)
        if ours:
            self.assertTrue(ANSWERED.match(ours), ours[:80])
        event("fast path" if end >= 0 and readUpgrade(head, end) else "Autobahn's path")
        event(ours[:12].decode("latin-1") or "incomplete")
