"""
A conformance smoke for CI: the RFC 6455 / RFC 7692 behaviour our own layers
(auth, routing, delivery) could break, checked against a real ``twistd -n
realtime`` with raw frames and exact close codes.

This is not the Autobahn testsuite (``tests/conformance/`` runs that, in
development); it is the handful of its themes that go through our code: a
fragmented message must reach every routing strategy reassembled, a protocol
error must close with the right code after what was already queued (the
testsuite's 3.2 / 4.1.3 / 5.15 shape), limits must hold with compression on,
and control frames must keep flowing while deliveries are queued.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SkipTest

from realtime import closecodes
from tests.rawsocket import (
    DEFLATE_OFFER,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    closePayload,
    deflate,
    frame,
)
from tests.serverprocess import ServerTestCase, api, waitUntil

#: the smoke server's message limit: small, so the limit tests are fast
LIMIT = 65536

#: a text message whose first fragment ends inside a code point
SPLIT_TEXT = "κόσμε ✓ ok".encode()

#: UTF-8 of a UTF-16 surrogate: invalid however the message continues
INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"


def peakMemory(pid: int) -> int:
    """
    The peak resident set of process C{pid}, in bytes (Linux).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class SmokeTestCase(ServerTestCase):
    """
    One server per class, and raw connections to it.
    """

    def client(self, extensions: str | None = None) -> RawClient:
        """
        A raw connection, closed at the end of the test.
        """
        client = RawClient(self.server.ports["port"], extensions=extensions)
        self.addCleanup(client.close)
        return client

    def assertClosedWith(self, client: RawClient, code: int) -> None:
        """
        The server's next frame is a close with C{code}, and the server then
        closes the TCP connection.
        """
        self.assertEqual(client.closeCode(), code)
        self.assertTrue(client.closed())


class EchoTests(SmokeTestCase):
    """
    ``--routing echo``, the testsuite's testee, with a small message limit.
    """

    serverArgs = ("--auth", "anonymous", "--routing", "echo", "--max-message-size", str(LIMIT))

    def test_fragmentsReassembled(self) -> None:
        """
        A text message split inside a code point and a binary message in
        three fragments come back whole, each as its own type.
        """
        c = self.client()
        c.send(frame(SPLIT_TEXT[:3], OP_TEXT, fin=False), frame(SPLIT_TEXT[3:7], OP_CONTINUATION, fin=False))
        c.send(frame(SPLIT_TEXT[7:], OP_CONTINUATION))
        c.send(frame(b"\x00", OP_BINARY, fin=False), frame(b"\xff", OP_CONTINUATION, fin=False))
        c.send(frame(b"", OP_CONTINUATION))
        self.assertEqual(c.readMessage(), (OP_TEXT, SPLIT_TEXT))
        self.assertEqual(c.readMessage(), (OP_BINARY, b"\x00\xff"))

    def test_controlFramesInsideFragments(self) -> None:
        """
        A ping between fragments is answered at once, with its payload,
        before the message it interrupted is complete.
        """
        c = self.client()
        c.send(frame(b"frag", OP_TEXT, fin=False), frame(b"in between", OP_PING))
        pong = c.read()
        self.assertEqual((pong.opcode, pong.payload), (OP_PONG, b"in between"))
        c.send(frame(b"ment", OP_CONTINUATION))
        self.assertEqual(c.readMessage(), (OP_TEXT, b"fragment"))

    def test_invalidUtf8FailsFast(self) -> None:
        """
        Invalid UTF-8 in the first fragment closes with 1007 without
        waiting for the rest of the message.
        """
        c = self.client()
        c.send(frame(INVALID_UTF8, OP_TEXT, fin=False))
        self.assertClosedWith(c, closecodes.INVALID_PAYLOAD)

    def test_validCloseCodesEchoed(self) -> None:
        """
        A close with any code a peer may send is answered with that code.
        """
        for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999):
            c = self.client()
            c.send(frame(closePayload(code, "bye ✓".encode()), OP_CLOSE))
            got = c.read()
            self.assertEqual((got.opcode, got.closeCode()), (OP_CLOSE, code), code)
            self.assertTrue(c.closed(), code)

    def test_emptyCloseEchoed(self) -> None:
        """
        A close without a code is answered with a close without a code.
        """
        c = self.client()
        c.send(frame(b"", OP_CLOSE))
        got = c.read()
        self.assertEqual((got.opcode, got.payload), (OP_CLOSE, b""))
        self.assertTrue(c.closed())

    def test_invalidCloseCodes(self) -> None:
        """
        Codes a peer may not send, and a one-byte close payload, are a
        protocol error (1002); a reason that is not UTF-8 is 1007.
        """
        for code in (0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
            c = self.client()
            c.send(frame(b"first"), frame(closePayload(code), OP_CLOSE))
            self.assertEqual(c.readMessage(), (OP_TEXT, b"first"), code)
            self.assertEqual(c.closeCode(), closecodes.PROTOCOL_ERROR, code)
            self.assertTrue(c.closed(), code)
        c = self.client()
        c.send(frame(b"\x03", OP_CLOSE))
        self.assertEqual(c.closeCode(), closecodes.PROTOCOL_ERROR)
        c = self.client()
        c.send(frame(closePayload(1000, INVALID_UTF8), OP_CLOSE))
        self.assertEqual(c.closeCode(), closecodes.INVALID_PAYLOAD)

    def test_protocolErrorAfterQueuedEcho(self) -> None:
        """
        A valid message, then a protocol violation, then a ping, all in one
        read: the echo is delivered, then close 1002, and no pong.  (With
        Autobahn's default C{failByDrop=True} the TCP connection is aborted
        and the queued echo lost: the testsuite's NON-STRICT 3.2-3.4,
        4.1.3-4.2.5 and 5.15.)
        """
        violations = {
            "RSV1 without extension": frame(b"bad", OP_TEXT, rsv=4),
            "RSV2": frame(b"bad", OP_TEXT, rsv=2),
            "RSV3 on a ping": frame(b"", OP_PING, rsv=1),
            "reserved data opcode": frame(b"", 5),
            "reserved control opcode": frame(b"", 11),
            "continuation of nothing": frame(b"x", OP_CONTINUATION, fin=False),
            "fragmented ping": frame(b"", OP_PING, fin=False),
        }
        for name, violation in violations.items():
            c = self.client()
            c.send(frame(b"Hello, world!"), violation, frame(b"", OP_PING))
            self.assertEqual(c.readMessage(), (OP_TEXT, b"Hello, world!"), name)
            self.assertEqual(c.closeCode(), closecodes.PROTOCOL_ERROR, name)
            self.assertTrue(c.closed(), name)

    def test_messageSize(self) -> None:
        """
        A message of exactly the limit is echoed; one byte more, whole or
        in fragments, is closed with 1009.
        """
        c = self.client()
        c.send(frame(b"a" * LIMIT, OP_BINARY))
        self.assertEqual(c.readMessage(), (OP_BINARY, b"a" * LIMIT))
        c.send(frame(b"a" * (LIMIT + 1), OP_BINARY))
        self.assertClosedWith(c, closecodes.MESSAGE_TOO_BIG)
        c = self.client()
        c.send(frame(b"a" * (LIMIT // 2), OP_TEXT, fin=False), frame(b"a" * (LIMIT // 2 + 1), OP_CONTINUATION))
        self.assertClosedWith(c, closecodes.MESSAGE_TOO_BIG)

    def test_deflateNegotiated(self) -> None:
        """
        A permessage-deflate offer is accepted with its parameters, and a
        compressed message comes back as the same message.
        """
        c = self.client(DEFLATE_OFFER + "; server_no_context_takeover; server_max_window_bits=10")
        accepted = [p.strip() for p in c.extensions().split(";")]
        self.assertEqual(accepted[0], "permessage-deflate")
        self.assertIn("server_no_context_takeover", accepted)
        self.assertIn("server_max_window_bits=10", accepted)
        text = "compressible ✓ ".encode() * 200
        c.send(frame(deflate(text), OP_TEXT, rsv=4))
        self.assertEqual(c.readMessage(), (OP_TEXT, text))

    def test_deflateMessageSize(self) -> None:
        """
        With compression the limit is on the inflated size: a compressed
        message that inflates to the limit is echoed, one byte more is 1009,
        however small it was on the wire.
        """
        c = self.client(DEFLATE_OFFER)
        self.assertTrue(c.extensions().startswith("permessage-deflate"))
        c.send(frame(deflate(b"b" * LIMIT), OP_BINARY, rsv=4))
        self.assertEqual(c.readMessage(), (OP_BINARY, b"b" * LIMIT))
        c = self.client(DEFLATE_OFFER)
        c.send(frame(deflate(b"b" * (LIMIT + 1)), OP_BINARY, rsv=4))
        self.assertClosedWith(c, closecodes.MESSAGE_TOO_BIG)

    def test_decompressionBomb(self) -> None:
        """
        A 60 KiB frame that inflates to 60 MiB is closed with 1009 without
        being inflated: the server's peak memory does not grow by the
        inflated size.
        """
        if not os.path.exists(f"/proc/{self.server.process.pid}/status"):
            raise SkipTest("peak memory is read from /proc (Linux)")
        bomb = deflate(bytes(60 << 20))
        self.assertLess(len(bomb), LIMIT)
        before = peakMemory(self.server.process.pid)
        c = self.client(DEFLATE_OFFER)
        c.send(frame(bomb, OP_BINARY, rsv=4))
        self.assertClosedWith(c, closecodes.MESSAGE_TOO_BIG)
        self.assertLess(peakMemory(self.server.process.pid) - before, 16 << 20)

    def test_corruptDeflate(self) -> None:
        """
        A compressed message that cannot be inflated is closed with 1007.
        """
        c = self.client(DEFLATE_OFFER)
        c.send(frame(b"\xff\xff\xff\xff", OP_TEXT, rsv=4))
        self.assertClosedWith(c, closecodes.INVALID_PAYLOAD)

    def test_compressionNotNegotiated(self) -> None:
        """
        Without an offer, a compressed-looking message (RSV1) is a protocol
        error.
        """
        c = self.client()
        self.assertEqual(c.extensions(), "")
        c.send(frame(deflate(b"hello"), OP_TEXT, rsv=4))
        self.assertClosedWith(c, closecodes.PROTOCOL_ERROR)


class ChatTests(SmokeTestCase):
    """
    ``--routing chat``: messages go through the fan-out to other clients.
    """

    serverArgs = ("--auth", "anonymous", "--routing", "chat")

    def connected(self, n: int) -> list[RawClient]:
        """
        C{n} clients, returned once the server counts all of them.
        """
        clients = [self.client() for _ in range(n)]
        waitUntil(lambda: api(self.server, "GET", "/api/stats")[1]["connections"] == n)
        return clients

    def test_fragmentsRelayedWhole(self) -> None:
        """
        A fragmented message with a ping inside reaches the others as one
        message of its own type; the sender gets only the pong.
        """
        a, b = self.connected(2)
        a.send(frame(SPLIT_TEXT[:3], OP_TEXT, fin=False), frame(b"p", OP_PING))
        a.send(frame(SPLIT_TEXT[3:], OP_CONTINUATION))
        a.send(frame(b"\x01", OP_BINARY, fin=False), frame(b"\x02", OP_CONTINUATION), frame(b"q", OP_PING))
        self.assertEqual(b.readMessage(), (OP_TEXT, SPLIT_TEXT))
        self.assertEqual(b.readMessage(), (OP_BINARY, b"\x01\x02"))
        self.assertEqual([(f.opcode, f.payload) for f in (a.read(), a.read())], [(OP_PONG, b"p"), (OP_PONG, b"q")])

    def test_invalidUtf8NotRelayed(self) -> None:
        """
        A sender failing UTF-8 in a fragment is closed with 1007 and nothing
        of its message reaches the others.
        """
        a, b, c = self.connected(3)
        a.send(frame(b"partial ", OP_TEXT, fin=False), frame(INVALID_UTF8, OP_CONTINUATION, fin=False))
        self.assertClosedWith(a, closecodes.INVALID_PAYLOAD)
        c.send(frame(b"after"))
        self.assertEqual(b.readMessage(), (OP_TEXT, b"after"))

    def test_pingWhileBroadcastQueued(self) -> None:
        """
        While broadcasts (768 KiB) wait unread for a client, its ping is
        answered after them, and every frame arrives whole and in order.
        """
        [a] = self.connected(1)
        pieces = [os.urandom(96 * 1024).hex() for _ in range(4)]
        for piece in pieces:
            status, body = api(self.server, "POST", "/api/broadcast", json.dumps({"data": piece}).encode())
            self.assertEqual((status, body["delivered"]), (200, 1))
        a.send(frame(b"still there?", OP_PING))
        self.assertEqual([a.readMessage() for _ in pieces], [(OP_TEXT, p.encode()) for p in pieces])
        pong = a.read()
        self.assertEqual((pong.opcode, pong.payload), (OP_PONG, b"still there?"))


class UidTests(SmokeTestCase):
    """
    ``--routing uid`` behind first-message auth: the first message, too, is
    a whole message, however it was fragmented.
    """

    serverArgs = ("--routing", "uid")

    def test_fragmentedFirstMessageAndPush(self) -> None:
        """
        A uid sent in fragments authenticates that uid; a later fragmented
        message gets one push-only error frame, not one per fragment.
        """
        c = self.client()
        c.send(frame(b"frag", OP_TEXT, fin=False), frame(b"", OP_PING), frame(b"-uid", OP_CONTINUATION))
        self.assertEqual(c.read().opcode, OP_PONG)
        waitUntil(lambda: api(self.server, "GET", "/api/online?uid=frag-uid")[1]["online"]["frag-uid"] == 1)
        c.send(frame(b"a", OP_BINARY, fin=False), frame(b"b", OP_CONTINUATION, fin=False))
        c.send(frame(b"c", OP_CONTINUATION), frame(b"", OP_PING))
        opcode, payload = c.readMessage()
        self.assertEqual((opcode, json.loads(payload)["code"]), (OP_TEXT, "push-only"))
        self.assertEqual(c.read().opcode, OP_PONG)
        status, body = api(self.server, "POST", "/api/push", json.dumps({"uid": "frag-uid", "data": "hi"}).encode())
        self.assertEqual((status, body["delivered"]), (200, 1))
        self.assertEqual(c.readMessage(), (OP_TEXT, b"hi"))

    def test_invalidUtf8FirstMessage(self) -> None:
        """
        Invalid UTF-8 in a fragmented first message is a 1007, decided by
        the protocol before the authenticator sees anything.
        """
        c = self.client()
        c.send(frame(INVALID_UTF8, OP_TEXT, fin=False))
        self.assertClosedWith(c, closecodes.INVALID_PAYLOAD)

