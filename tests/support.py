"""
Helpers for driving the server in tests: raw WebSocket bytes for in-memory
transports, the server wired on a fake clock, and L{ProtocolTestCase}, which
connects in-memory clients to it.  (What plugin authors need as well lives
in the public kit, C{realtime.testing}.)
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from txaio.testutil import replace_loop

from realtime import wiring
from realtime.broker.memory import MemoryBroker
from realtime.config.options import Options
from realtime.core.namespaces import NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.timers import TimeoutWheel
from realtime.delivery.writer import TurnWriter
from realtime.interfaces import IPushFraming
from realtime.push.router import Router
from realtime.routing.context import RoutingContext
from realtime.values import Envelope, PushResult
from realtime.websocket.factory import RealtimeServerFactory
from realtime.websocket.protocol import RealtimeServerProtocol
from realtime.wiring import Core

PEER = IPv4Address("TCP", "127.0.0.1", 50000)
KEY = base64.b64encode(b"0123456789abcdef").decode()


class TolerantTransport(StringTransport):
    """
    A C{StringTransport} that, like a real TCP transport, lets Autobahn
    unregister a producer it never registered, and records aborts.
    """

    aborted = False

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("producer already registered")
        self.producer = producer
        self.streaming = streaming

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def handshake(path: str = "/", headers: dict[str, str] | None = None, protocols: list[str] | None = None) -> bytes:
    """
    A browser's opening handshake.
    """
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: localhost:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def clientFrame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """
    A masked client frame.
    """
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def closeFrame(code: int, reason: bytes = b"") -> bytes:
    """
    A masked client close frame.
    """
    return clientFrame(struct.pack("!H", code) + reason, opcode=8)


def splitResponse(data: bytes) -> tuple[bytes, bytes]:
    """
    The HTTP response head and the WebSocket bytes after it.
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response in {data[:200]!r}"
    return head, rest


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """
    Parse unmasked server frames into C{(opcode, payload)}.
    """
    frames = []
    while data:
        b0, b1 = data[0], data[1]
        n = b1 & 0x7F
        offset = 2
        if n == 126:
            (n,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif n == 127:
            (n,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((b0 & 0x0F, data[offset : offset + n]))
        data = data[offset + n :]
    return frames


def closeCode(payload: bytes) -> tuple[int, str]:
    """
    The code and reason of a close frame's payload.
    """
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def buildRouter(reactor: Any, store: Any = None, rules: NamespaceRules | None = None, **kw: Any) -> Router:
    """
    A router over a memory broker, wired by L{realtime.wiring.buildRouter}
    as C{buildCore} wires it.

    @param kw: C{offline} (L{OfflineLimits} or C{None}), C{authorizer},
        C{framePush}; C{wrapBroker}: what turns the memory broker into the
        one the router holds.
    """
    registry = SessionRegistry()
    fanout = Fanout(reactor)
    broker = kw.pop("wrapBroker", lambda b: b)(MemoryBroker(registry, fanout))
    return wiring.buildRouter(
        reactor,
        registry,
        broker,
        fanout,
        store,
        rules or NamespaceRules(),
        kw.pop("offline", None),
        **kw,
    )


def publishing(publisher: Any, envelope: Envelope) -> Deferred[PushResult]:
    """
    C{publisher.publish(envelope)} as a Deferred, however it answers (a
    result at once, or a Deferred), for tests that wait for either.
    """
    return maybeDeferred(publisher.publish, envelope)


def buildFactory(
    authenticator: Any, strategy: Any, reactor: Any, router: Router | None = None, **kw: Any
) -> RealtimeServerFactory:
    """
    A factory over L{buildRouter}'s router (or C{router}), on C{reactor}.
    """
    if router is None:
        framing = strategy.framePush if IPushFraming.providedBy(strategy) else None
        router = buildRouter(reactor, offline=None, framePush=framing)
    factory = RealtimeServerFactory(
        authenticator,
        strategy,
        router,
        router.broker.fanout,  # type: ignore[attr-defined]
        TimeoutWheel(reactor),
        TurnWriter(reactor),
        registry=router.registry,
        clock=reactor,
        sessionPrefix="t.",
        **kw,
    )
    return factory


class AutobahnPath(RealtimeServerProtocol):
    """
    The same server protocol, with Autobahn's own handshake.
    """

    processHandshake = WebSocketServerProtocol.processHandshake


class ProtocolTestCase(SynchronousTestCase):
    """
    Connect in-memory clients to a factory under a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)

    def serve(self, authenticator: object, strategy: object, **kw: object) -> None:
        self.factory = buildFactory(authenticator, strategy, self.clock, **kw)
        self.registry = self.factory.registry

    def connect(self, request: bytes | None = None) -> tuple[object, TolerantTransport]:
        proto = self.factory.buildProtocol(PEER)
        transport = TolerantTransport()
        proto.makeConnection(transport)
        proto.dataReceived(request or handshake())
        self.clock.advance(0)
        return proto, transport

    def opened(self, transport: TolerantTransport) -> list[tuple[int, bytes]]:
        self.clock.advance(0)
        head, rest = splitResponse(transport.value())
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return serverFrames(rest)

    def frames(self, transport: TolerantTransport) -> list[tuple[int, bytes]]:
        """
        Frames written since the last call.
        """
        self.clock.advance(0)
        data = transport.value()
        transport.clear()
        if data.startswith(b"HTTP/1.1"):
            data = splitResponse(data)[1]
        return serverFrames(data)


def render(resource: Any, request: DummyRequest) -> tuple[int, Any]:
    """
    Render a GET synchronously: its status and JSON body.
    """
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request.responseCode or 200, json.loads(b"".join(request.written)) if request.finished else None
def buildCore(reactor: Any, *argv: str) -> Core:
    """
    A whole server's core from command-line options, as C{twistd realtime}
    builds it (L{realtime.wiring.buildCore}); nothing listens.
    """
    options = Options()
    options.parseOptions(list(argv))
    return wiring.buildCore(options, reactor)


def buildPlugins(options: Options, reactor: Any) -> tuple[Any, Any]:
    """
    Both plugins, the routing one in a context of its own (a registry and a
    channel service over a memory broker): as C{buildCore} builds them into its
    server, for tests of their options.

    @raise usage.UsageError: when a plugin refuses its options.
    """
    authenticator = wiring.buildAuthenticator(options, reactor)
    registry = SessionRegistry()
    broker = MemoryBroker(registry, Fanout(reactor))
    publisher, channels = wiring.buildChannels(reactor, registry, broker, None, options["namespace-rules"], authenticator)
    return authenticator, wiring.buildRouting(options, reactor, RoutingContext(registry, channels))
