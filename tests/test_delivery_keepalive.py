"""
Tests for L{realtime.delivery.keepalive}: one timer pings every idle session.
"""

from __future__ import annotations

import txaio
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.core.registry import SessionRegistry
from realtime.delivery.keepalive import Keepalive
from realtime.routing.echo import EchoStrategy
from tests.fakes import FakeSession
from tests.support import PEER, TolerantTransport, buildFactory, clientFrame, handshake, serverFrames

txaio.use_twisted()


class Recorder(FakeSession):
    """
    A session that notes when it was looked at.
    """

    def __init__(self, uid: str) -> None:
        super().__init__(uid)
        self.looked: list[float] = []

    def keepalive(self, now: float, interval: float) -> None:
        self.looked.append(now)


class WalkTests(SynchronousTestCase):
    """
    Every session is looked at about once per interval, a slice per second.
    """

    def test_slices(self) -> None:
        """
        With 100 sessions and a 10 s interval, 10 are looked at each second
        and each once in 10 s.
        """
        clock = Clock()
        registry = SessionRegistry()
        sessions = [Recorder(str(i)) for i in range(100)]
        for s in sessions:
            registry.add(s)
        keepalive = Keepalive(clock, registry, 10.0)
        keepalive.startService()
        self.addCleanup(keepalive.stopService)
        clock.advance(1)
        self.assertEqual(sum(len(s.looked) for s in sessions), 10)
        for _ in range(9):
            clock.advance(1)
        self.assertEqual([len(s.looked) for s in sessions], [1] * 100)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_off(self) -> None:
        """
        An interval of 0 starts no timer.
        """
        clock = Clock()
        keepalive = Keepalive(clock, SessionRegistry(), 0)
        keepalive.startService()
        self.assertEqual(clock.getDelayedCalls(), [])


class SessionKeepaliveTests(SynchronousTestCase):
    """
    A silent session is pinged, then dropped; anything it sends resets that.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        loop = replace_loop(self.clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), self.clock)
        self.proto = factory.buildProtocol(PEER)
        self.transport = TolerantTransport()
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(handshake())
        self.clock.advance(0)
        self.transport.clear()

    def sent(self) -> list[tuple[int, bytes]]:
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        return serverFrames(data)

    def test_pingThenDrop(self) -> None:
        """
        Silent for an interval: one ping; silent for two: dropped.
        """
        self.clock.advance(29)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.assertEqual(self.sent(), [])
        self.clock.advance(1)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.assertEqual([op for op, _ in self.sent()], [9])
        self.clock.advance(30)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.assertTrue(self.transport.aborted)

    def test_trafficResets(self) -> None:
        """
        A pong (any frame) after the ping keeps the session.
        """
        self.clock.advance(30)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.assertEqual([op for op, _ in self.sent()], [9])
        self.clock.advance(5)
        self.proto.dataReceived(clientFrame(b"", opcode=10))
        self.clock.advance(29)
        self.proto.keepalive(self.clock.seconds(), 30)
        self.assertFalse(self.transport.aborted)
        self.assertEqual(self.sent(), [])
