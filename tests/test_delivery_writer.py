"""
Tests for L{realtime.delivery.writer} and the session's sending half over real
loopback sockets: frames sent straight to the socket and frames Twisted
buffers (once the kernel's buffers are full) leave in the order they were
queued.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from realtime.auth.firstpacket import FirstPacketAuthenticator
from realtime.routing.uid import UidStrategy
from realtime.values import Envelope, ToUids
from tests.support import buildFactory, clientFrame, handshake, serverFrames, splitResponse

#: enough to fill the loopback socket buffers many times over
FRAMES = 300
SIZE = 64 * 1024


class Reader(Protocol):
    """
    Sends the handshake and a uid; collects everything the server sends.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.gotBytes: dict[int, defer.Deferred[None]] = {}
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)

    def connectionMade(self) -> None:
        self.transport.write(handshake("/") + clientFrame(b"u1"))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for size in [n for n in self.gotBytes if len(self.received) >= n]:
            self.gotBytes.pop(size).callback(None)

    def waitFor(self, size: int) -> defer.Deferred[None]:
        if len(self.received) >= size:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self.gotBytes[size] = d
        return d


def payload(seq: int) -> bytes:
    return struct.pack("!I", seq) * (SIZE // 4)


class OrderTests(TestCase):
    """
    Pushes to a client that stops reading fill the kernel's buffers, then
    Twisted's; once it reads again, everything arrives, in order, and later
    pushes go straight to the socket again.
    """

    @defer.inlineCallbacks
    def test_orderAcrossBuffers(self) -> Any:
        factory = buildFactory(
            FirstPacketAuthenticator(reactor, 10.0, None), UidStrategy(), reactor, maxQueuedBytes=1 << 30
        )
        self.addCleanup(factory.wheel.stop)
        opened: defer.Deferred[Any] = defer.Deferred()
        closed: defer.Deferred[Any] = defer.Deferred()
        sessionOpened, sessionClosed = factory.sessionOpened, factory.sessionClosed

        def announceOpened(session: Any) -> None:
            sessionOpened(session)
            opened.callback(session)

        def announceClosed(session: Any) -> None:
            sessionClosed(session)
            closed.callback(session)

        factory.sessionOpened = announceOpened  # type: ignore[method-assign]
        factory.sessionClosed = announceClosed  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reader = Reader()
        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: reader))
        session = yield opened
        yield reader.waitFor(1)
        head, _ = splitResponse(bytes(reader.received))
        start = len(head) + 4
        reader.transport.pauseProducing()

        router = factory.router
        for seq in range(FRAMES):
            self.assertEqual(router.publish(Envelope(ToUids(("u1",)), payload(seq), True)).delivered, 1)  # type: ignore[union-attr]
            if seq % 10 == 9:
                yield task.deferLater(reactor, 0, lambda: None)
        yield task.deferLater(reactor, 0, lambda: None)
        transport = session.transport
        self.assertTrue(transport.dataBuffer or transport._tempDataLen, "Twisted's buffer was never used")
        self.assertIsNone(session._directSend)

        reader.transport.resumeProducing()
        frameSize = 2 + 8 + SIZE
        yield reader.waitFor(start + FRAMES * frameSize)
        # drained: the next pushes go straight to the socket again
        for seq in range(FRAMES, FRAMES + 3):
            router.publish(Envelope(ToUids(("u1",)), payload(seq), True))
        yield reader.waitFor(start + (FRAMES + 3) * frameSize)
        self.assertIsNotNone(session._directSend)

        reader.transport.loseConnection()
        yield defer.gatherResults([closed, reader.lost])

        frames = serverFrames(bytes(reader.received[start:]))
        self.assertEqual(len(frames), FRAMES + 3)
        for seq, (opcode, data) in enumerate(frames):
            self.assertEqual((opcode, data[:4], len(data)), (2, struct.pack("!I", seq), SIZE), seq)
