"""
Tests for L{realtime.websocket.protocol}: the Autobahn shell, driven with raw bytes
over an in-memory transport and a fake clock.
"""

from __future__ import annotations

import json

import txaio
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from realtime import closecodes
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.auth.firstpacket import FirstPacketAuthenticator
from realtime.delivery.fanout import Frame
from realtime.interfaces import ISession
from realtime.routing.chat import ChatStrategy
from realtime.routing.echo import EchoStrategy
from realtime.routing.uid import UidStrategy
from realtime.values import Accept, Deny, Identity
from tests.fakes import ScriptedAuthenticator
from tests.support import (
    ProtocolTestCase,
    TolerantTransport,
    clientFrame,
    closeCode,
    handshake,
    splitResponse,
)

txaio.use_twisted()


class HandshakeTests(ProtocolTestCase):
    """
    The authenticator decides at the handshake.
    """

    def test_acceptRegisters(self) -> None:
        """
        An accepted connection is upgraded and indexed by its uid, and is an
        L{ISession}.
        """
        self.serve(AnonymousAuthenticator(), EchoStrategy())
        proto, transport = self.connect()
        self.assertEqual(self.opened(transport), [])
        self.assertTrue(verifyObject(ISession, proto))
        self.assertEqual(self.registry.sessionsOf(proto.uid), (proto,))
        self.assertTrue(proto.sessionId.startswith("t."))

    def test_denyIsHttpError(self) -> None:
        """
        A C{Deny} is an HTTP error response with the reason; no session opens.
        """
        self.serve(ScriptedAuthenticator(Deny(401, "bad signature")), EchoStrategy())
        proto, transport = self.connect()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 bad signature\r\n"), transport.value())
        self.assertEqual(len(self.registry), 0)
        self.assertEqual(self.factory.authFailures, {"bad signature": 1})

    def test_requestSeenByAuthenticator(self) -> None:
        """
        The authenticator sees path, query, lower-case headers and protocols.
        """
        auth = ScriptedAuthenticator(Accept(Identity("u", subprotocol="p2")))
        self.serve(auth, EchoStrategy())
        proto, transport = self.connect(handshake("/ws?uid=7&x=1&x=2", {"X-Token": "t"}, ["p1", "p2"]))
        [request] = auth.requests
        self.assertEqual(request.path, "/ws")
        self.assertEqual(request.param("uid"), "7")
        self.assertEqual(request.params["x"], ["1", "2"])
        self.assertEqual(request.headers["x-token"], "t")
        self.assertEqual(request.protocols, ("p1", "p2"))
        head, _ = splitResponse(transport.value())
        self.assertIn(b"Sec-WebSocket-Protocol: p2\r\n", head)

    def test_subprotocolNotOffered(self) -> None:
        """
        An authenticator choosing a subprotocol the client did not offer is a
        server error, not a broken handshake.
        """
        self.serve(ScriptedAuthenticator(Accept(Identity("u", subprotocol="zz"))), EchoStrategy())
        proto, transport = self.connect(handshake(protocols=["p1"]))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500"), transport.value())
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_asyncAccept(self) -> None:
        """
        An authenticator may answer with a Deferred.
        """
        d: Deferred[object] = Deferred()
        self.serve(ScriptedAuthenticator(d), EchoStrategy())
        proto, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        d.callback(Accept(Identity("late")))
        self.opened(transport)
        self.assertEqual(len(self.registry.sessionsOf("late")), 1)


class SlowHandshakeTests(ProtocolTestCase):
    """
    An authenticator that does not answer in time is answered for it.
    """

    def test_timeout(self) -> None:
        """
        After C{HANDSHAKE_TIMEOUT} the client gets a 503; a late answer
        changes nothing.
        """
        from realtime.websocket.protocol import HANDSHAKE_TIMEOUT

        d: Deferred[object] = Deferred()
        self.serve(ScriptedAuthenticator(d), EchoStrategy())
        proto, transport = self.connect()
        self.clock.advance(HANDSHAKE_TIMEOUT + 1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 authentication took too long"), transport.value())
        transport.clear()
        d.callback(Accept(Identity("late")))
        self.clock.advance(0)
        self.assertNotIn(b"101", transport.value())
        self.assertEqual(len(self.registry), 0)
        self.assertEqual(self.factory.authFailures, {"handshake timeout": 1})

    def test_handshakeForgotten(self) -> None:
        """
        Once authenticated, what only the handshake needed is dropped.
        """
        from realtime.websocket._autobahn.connection import ServerConnection

        self.serve(AnonymousAuthenticator(), EchoStrategy())
        proto, transport = self.connect()
        self.assertIsNone(proto.handshake)
        for name in ServerConnection.HANDSHAKE_ATTRIBUTES:
            self.assertNotIn(name, proto.__dict__)
        self.assertNotIn("maxMessagePayloadSize", proto.__dict__)
        self.assertEqual(proto.maxMessagePayloadSize, self.factory.maxMessagePayloadSize)
        self.assertIs(proto.perMessageCompressionAccept, self.factory.perMessageCompressionAccept)
        self.assertNotIn("send_queue", proto.__dict__)
        self.assertEqual(len(proto.send_queue), 0)


class FirstMessageTests(ProtocolTestCase):
    """
    First-message authentication: nothing else is accepted until it decides,
    and silence is closed.
    """

    def setUp(self) -> None:
        super().setUp()
        self.serve(FirstPacketAuthenticator(self.clock, 10.0, None), UidStrategy())

    def test_firstMessageIsUid(self) -> None:
        """
        The first message names the uid; the session joins then, not before.
        """
        proto, transport = self.connect()
        self.opened(transport)
        self.assertEqual(len(self.registry), 0)
        proto.dataReceived(clientFrame(b"uid1"))
        self.assertEqual(self.registry.sessionsOf("uid1"), (proto,))
        self.assertEqual(self.frames(transport), [])

    def test_timeout(self) -> None:
        """
        A client silent for the timeout is closed with 4002.
        """
        proto, transport = self.connect()
        self.opened(transport)
        transport.clear()
        self.clock.advance(9.9)
        self.assertEqual(self.frames(transport), [])
        self.clock.advance(0.5)
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual((opcode, closeCode(payload)), (8, (closecodes.AUTH_TIMEOUT, "authentication timeout")))
        self.assertEqual(self.factory.authFailures, {"timeout": 1})

    def test_timeoutCancelled(self) -> None:
        """
        Once authenticated, the timeout never fires.
        """
        proto, transport = self.connect()
        proto.dataReceived(clientFrame(b"uid1"))
        transport.clear()
        self.clock.advance(60)
        self.assertEqual(self.frames(transport), [])
        self.assertEqual(len(self.factory.wheel), 0)

    def test_denied(self) -> None:
        """
        A refused first message closes with 4001 and the reason.
        """
        proto, transport = self.connect()
        transport.clear()
        proto.dataReceived(clientFrame(b"\x01", opcode=2))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual(
            closeCode(payload), (closecodes.AUTH_FAILED, "first message must be text (the uid), not binary")
        )
        self.assertEqual(len(self.registry), 0)

    def test_afterAuthRouted(self) -> None:
        """
        Messages after the first are routed: uid routing answers an error frame.
        """
        proto, transport = self.connect()
        proto.dataReceived(clientFrame(b"uid1") + clientFrame(b"hello?"))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual(opcode, 1)
        self.assertEqual(json.loads(payload)["code"], "push-only")

    def test_closeLeavesRegistry(self) -> None:
        """
        A closed session is gone from the registry and owns no timer.
        """
        proto, transport = self.connect()
        proto.dataReceived(clientFrame(b"uid1"))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.registry), 0)

    def test_lostBeforeAuth(self) -> None:
        """
        A connection lost while waiting leaves no timer behind.
        """
        proto, transport = self.connect()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.factory.wheel), 0)


class AsyncFirstMessageTests(ProtocolTestCase):
    """
    An asynchronous first-message check holds later messages until it decides.
    """

    def test_earlyMessagesKept(self) -> None:
        """
        Messages sent while the check is pending are routed, in order, after it.
        """
        d: Deferred[object] = Deferred()
        from realtime.values import AwaitFirstMessage

        self.serve(ScriptedAuthenticator(AwaitFirstMessage(5), d), EchoStrategy())
        proto, transport = self.connect()
        transport.clear()
        proto.dataReceived(clientFrame(b"me") + clientFrame(b"one") + clientFrame(b"two"))
        self.assertEqual(self.frames(transport), [])
        d.callback(Accept(Identity("me")))
        self.assertEqual(self.frames(transport), [(1, b"one"), (1, b"two")])

    def test_failureLoggedAndClosed(self) -> None:
        """
        A failing check is logged and the connection closed with 1011.
        """
        d: Deferred[object] = Deferred()
        from realtime.values import AwaitFirstMessage

        self.serve(ScriptedAuthenticator(AwaitFirstMessage(5), d), EchoStrategy())
        proto, transport = self.connect()
        transport.clear()
        proto.dataReceived(clientFrame(b"me"))
        d.errback(RuntimeError("db down"))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual(closeCode(payload)[0], closecodes.INTERNAL_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RoutingTests(ProtocolTestCase):
    """
    Routing actions reach the wire.
    """

    def test_echoTextAndBinary(self) -> None:
        """
        Echo keeps text as text and binary as binary.
        """
        self.serve(AnonymousAuthenticator(), EchoStrategy())
        proto, transport = self.connect()
        transport.clear()
        proto.dataReceived(clientFrame("héllo".encode()) + clientFrame(b"\x00\xff", opcode=2))
        self.assertEqual(self.frames(transport), [(1, "héllo".encode()), (2, b"\x00\xff")])

    def test_chat(self) -> None:
        """
        Chat relays to the others and not back to the sender.
        """
        self.serve(AnonymousAuthenticator(), ChatStrategy())
        (a, ta), (_b, tb), (_c, tc) = self.connect(), self.connect(), self.connect()
        for t in (ta, tb, tc):
            t.clear()
        a.dataReceived(clientFrame(b"hi all"))
        self.assertEqual(self.frames(ta), [])
        self.assertEqual(self.frames(tb), [(1, b"hi all")])
        self.assertEqual(self.frames(tc), [(1, b"hi all")])


class IdentityTests(ProtocolTestCase):
    """
    A client that asks (C{?identity=1}) is told the uid it was given, first;
    one that does not ask, as every Ratchet or Workerman client, gets
    nothing it did not get before.
    """

    def test_askedAtHandshake(self) -> None:
        """
        With an auth that decides at the handshake.
        """
        self.serve(AnonymousAuthenticator(), ChatStrategy())
        proto, transport = self.connect(handshake("/ws?identity=1"))
        self.assertEqual(
            [(op, json.loads(payload)) for op, payload in self.opened(transport)],
            [(1, {"type": "identity", "uid": proto.uid})],
        )
        self.assertTrue(proto.uid.startswith("anon-"))

    def test_askedWithFirstMessage(self) -> None:
        """
        With uid-first-packet, once the first message made the uid.
        """
        self.serve(FirstPacketAuthenticator(self.clock, 10.0, None), ChatStrategy())
        proto, transport = self.connect(handshake("/?identity=1"))
        self.assertEqual(self.opened(transport), [])
        proto.dataReceived(clientFrame(b"alice"))
        self.assertEqual(self.frames(transport), [(1, b'{"type":"identity","uid":"alice"}')])

    def test_notAsked(self) -> None:
        """
        Without the parameter, nothing is sent.
        """
        self.serve(AnonymousAuthenticator(), ChatStrategy())
        _, transport = self.connect(handshake("/ws?other=1"))
        self.assertEqual(self.opened(transport), [])


class SlowConsumerTests(ProtocolTestCase):
    """
    A session that stops reading is dropped instead of growing memory.
    """

    def setUp(self) -> None:
        super().setUp()
        self.serve(AnonymousAuthenticator(), EchoStrategy(), maxQueuedBytes=1000, slowConsumerTimeout=30)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    def test_producerRegistered(self) -> None:
        """
        The session registers itself as the transport's streaming producer.
        """
        self.assertIs(self.transport.producer, self.proto)
        self.assertTrue(self.transport.streaming)

    def test_overLimitWhilePaused(self) -> None:
        """
        More than C{maxQueuedBytes} queued while paused drops the session
        with 1013.
        """
        self.proto.pauseProducing()
        frame = Frame(b"x" * 400)
        self.assertTrue(self.proto.sendPrepared(frame))
        self.assertTrue(self.proto.sendPrepared(frame))
        self.assertFalse(self.proto.sendPrepared(frame))
        self.assertFalse(self.proto.sendPrepared(frame))
        frames = self.frames(self.transport)
        self.assertEqual([op for op, _ in frames], [1, 1, 8])
        self.assertEqual(closeCode(frames[-1][1]), (closecodes.SLOW_CONSUMER, "slow consumer"))
        self.assertEqual(self.factory.slowConsumers, 1)

    def test_resumeResets(self) -> None:
        """
        A session that catches up starts counting from zero again.
        """
        self.proto.pauseProducing()
        self.proto.sendPrepared(Frame(b"x" * 900))
        self.proto.resumeProducing()
        self.proto.pauseProducing()
        self.assertTrue(self.proto.sendPrepared(Frame(b"x" * 900)))
        self.clock.advance(29)
        self.proto.resumeProducing()
        self.clock.advance(10)
        self.assertEqual(self.factory.slowConsumers, 0)

    def test_pausedTooLong(self) -> None:
        """
        A session paused longer than the slow-consumer timeout is dropped.
        """
        self.proto.pauseProducing()
        self.clock.advance(31)
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(closeCode(payload)[0], closecodes.SLOW_CONSUMER)


class ChannelsProtocolTests(ProtocolTestCase):
    """
    The channels protocol through the shell: every request gets exactly one
    reply, errors keep the connection open.
    """

    def setUp(self) -> None:
        super().setUp()
        from realtime.core.channelwire import encodePush
        from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
        from realtime.routing.channels import ChannelsStrategy
        from realtime.store.memory import MemoryMessageStore
        from tests.support import buildRouter

        rules = NamespaceRules([parseNamespaceSpec("room:*:public=true:publish=true:presence=true")])
        router = buildRouter(self.clock, MemoryMessageStore(), rules, offline=None, framePush=encodePush)
        self.serve(AnonymousAuthenticator(), ChannelsStrategy(router.channels), router=router)

    def send(self, proto: object, transport: TolerantTransport, *requests: object) -> list[dict]:
        data = b"".join(
            clientFrame(r if isinstance(r, bytes) else json.dumps(r).encode(), opcode=2 if r == b"\x00" else 1)
            for r in requests
        )
        proto.dataReceived(data)
        return [json.loads(p) for op, p in self.frames(transport) if op == 1]

    def test_errorsKeepConnection(self) -> None:
        """
        Bad JSON, a non-object, an unknown op, a missing field and a binary
        message each get an error reply; the connection then still works.
        """
        proto, transport = self.connect()
        transport.clear()
        replies = self.send(
            proto,
            transport,
            b"{nope",
            [1, 2],
            {"id": 1, "op": "dance"},
            {"id": 2, "op": "subscribe"},
            {"id": 3, "op": "subscribe", "channel": "bad channel"},
            {"id": 4, "op": "ping"},
        )
        self.assertEqual(
            [(r["id"], r["ok"], r.get("error", {}).get("code")) for r in replies],
            [
                (None, False, "bad_json"),
                (None, False, "bad_request"),
                (1, False, "unknown_op"),
                (2, False, "bad_request"),
                (3, False, "bad_channel"),
                (4, True, None),
            ],
        )
        proto.dataReceived(clientFrame(b"\x00", opcode=2))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual(json.loads(payload)["error"]["code"], "bad_request")

    def test_hostileRequestsKeepConnection(self) -> None:
        """
        A request nested 100,000 deep, a lone surrogate in C{id} (on C{ping}
        too) or in C{data}, and C{NaN}, C{Infinity} or an out-of-range float
        in published data each get one documented error reply, nothing is
        logged, nothing is published, and the connection still works.
        """
        proto, transport = self.connect()
        transport.clear()
        self.send(proto, transport, {"id": "s", "op": "subscribe", "channel": "room:1"})
        publish = b'{"id":%s,"op":"publish","channel":"room:1","data":%s}'
        replies = self.send(
            proto,
            transport,
            b"[" * 100_000,
            b'{"id":' * 100_000,
            b'{"id":"\\ud800","op":"ping"}',
            b'{"id":"\\udfff","op":"subscribe","channel":"room:2"}',
            publish % (b"1", b'"\\ud800"'),
            publish % (b"2", b'{"\\udc00":1}'),
            publish % (b"3", b"NaN"),
            publish % (b"4", b"[-Infinity]"),
            publish % (b"5", b"1e999"),
            publish % (b"6", b"[" * 100_000),
            {"id": 7, "op": "ping"},
        )
        self.assertEqual(
            [(r["id"], r["ok"], r.get("error", {}).get("code")) for r in replies],
            [
                (None, False, "bad_json"),
                (None, False, "bad_json"),
                (None, False, "bad_request"),
                (None, False, "bad_request"),
                (1, False, "bad_request"),
                (2, False, "bad_request"),
                (None, False, "bad_json"),
                (None, False, "bad_json"),
                (None, False, "bad_json"),
                (None, False, "bad_json"),
                (7, True, None),
            ],
        )
        self.assertIn("nested too deeply", replies[0]["error"]["message"])
        self.assertIn('"id" is not valid Unicode', replies[2]["error"]["message"])
        self.assertIn('"data" is not valid Unicode', replies[4]["error"]["message"])
        self.assertIn("NaN is not valid JSON", replies[6]["error"]["message"])
        self.assertIn("Infinity is not valid JSON", replies[7]["error"]["message"])
        self.assertIn("1e999 is too large", replies[8]["error"]["message"])
        self.assertEqual(proto.state, proto.STATE_OPEN)
        [reply] = self.send(proto, transport, {"id": 8, "op": "subscribe", "channel": "room:1"})
        self.assertEqual(reply["error"]["code"], "already_subscribed")

    def test_subscribePublishPresence(self) -> None:
        """
        Two clients in a room: join event, publish with an offset, presence.
        """
        (a, ta), (b, tb) = self.connect(), self.connect()
        ta.clear()
        tb.clear()
        [reply] = self.send(a, ta, {"id": "s", "op": "subscribe", "channel": "room:1"})
        self.assertEqual((reply["id"], reply["ok"], reply["result"]["offset"]), ("s", True, 0))
        self.send(b, tb, {"id": 1, "op": "subscribe", "channel": "room:1"})
        [join] = [json.loads(p) for _, p in self.frames(ta)]
        self.assertEqual((join["type"], join["uid"]), ("join", b.uid))
        replies = self.send(b, tb, {"id": 2, "op": "publish", "channel": "room:1", "data": {"text": "hi"}})
        message, reply = replies
        self.assertEqual((message["type"], message["offset"], message["data"]), ("message", 1, {"text": "hi"}))
        self.assertEqual((reply["id"], reply["result"]["offset"], reply["result"]["delivered"]), (2, 1, 2))
        [seen] = [json.loads(p) for _, p in self.frames(ta)]
        self.assertEqual(seen, message)
        [presence] = self.send(a, ta, {"id": 3, "op": "presence", "channel": "room:1"})
        self.assertEqual(presence["result"]["connections"], 2)

    def test_storeFailing(self) -> None:
        """
        A publish the failing store cannot keep is answered C{unavailable}
        with the store's reason; the fault is logged once, not per request.
        """
        from realtime.core.channelwire import encodePush
        from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
        from realtime.routing.channels import ChannelsStrategy
        from realtime.store.health import MonitoredStore
        from realtime.store.memory import MemoryMessageStore
        from tests.fakes import FaultyStore
        from tests.support import buildRouter

        faulty = FaultyStore(MemoryMessageStore())
        faulty.fault = OSError(28, "No space left on device")
        rules = NamespaceRules([parseNamespaceSpec("log:*:public=true:publish=true:history=10")])
        router = buildRouter(self.clock, MonitoredStore(faulty), rules, offline=None, framePush=encodePush)
        self.serve(AnonymousAuthenticator(), ChannelsStrategy(router.channels), router=router)
        proto, transport = self.connect()
        transport.clear()
        publish = {"op": "publish", "channel": "log:1", "data": 1}
        replies = self.send(proto, transport, {"id": 1, **publish}, {"id": 2, **publish})
        self.assertEqual(
            [(r["id"], r["error"]["code"], r["error"]["message"]) for r in replies],
            [(n, "unavailable", "message store unavailable ([Errno 28] No space left on device)") for n in (1, 2)],
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_pushFramed(self) -> None:
        """
        A backend push arrives as a C{push} message.
        """
        from realtime.values import Envelope, ToUids

        proto, transport = self.connect()
        transport.clear()
        self.factory.router.publish(Envelope(ToUids((proto.uid,)), b"hello"))
        [(opcode, payload)] = self.frames(transport)
        self.assertEqual(json.loads(payload), {"type": "push", "data": "hello"})


class IdleLeftoversTests(ProtocolTestCase):
    """
    An idle connection does not keep what only a finished handshake, frame
    or message needed.
    """

    def test_dropped(self) -> None:
        """
        After each message the frame's unmasker and UTF-8 state are gone,
        and the next message is still read and answered.
        """
        self.serve(AnonymousAuthenticator(), EchoStrategy())
        proto, transport = self.connect()
        self.opened(transport)
        leftovers = {"current_frame_masker", "utf8validateLast", "http_request_host", "http_request_path"}
        self.assertEqual(leftovers & set(proto.__dict__), set())
        for text in (b"one", "\u00e9t\u00e9".encode(), b"three"):
            proto.dataReceived(clientFrame(text))
            self.assertEqual(self.frames(transport), [(1, text)])
            self.assertEqual(leftovers & set(proto.__dict__), set())
        # a message in two frames still reads whole
        proto.dataReceived(clientFrame(b"ab", fin=False) + clientFrame(b"cd", opcode=0))
        self.assertEqual(self.frames(transport), [(1, b"abcd")])
