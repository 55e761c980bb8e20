"""
The parent of C{--workers}: starting, restarting with backoff and stopping
its workers, on a clock and fake processes (the real processes are in
C{tests/test_workers_integration.py}); and the worker's side of the handoff.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from realtime.workers.handoff import ENVIRONMENT, Handoff, ParentWatch, adoptedEndpoint, tlsContext
from realtime.workers.supervisor import Backoff, WorkerSupervisor, familyOf
from tests.certificates import selfSigned, sslEndpoint
from tests.fakes import ProcessClock


class _Port:
    """
    What the supervisor reads of a bound port.
    """

    def __init__(self, fileno: int) -> None:
        self._fileno = fileno

    def fileno(self) -> int:
        return self._fileno

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8080 + self._fileno)


class _Listener(Service):
    """
    A listener already bound to a port.
    """

    def __init__(self, fileno: int) -> None:
        self.port = _Port(fileno)


class SupervisorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ProcessClock()
        self.listeners = {"port": _Listener(17), "api-port": _Listener(18)}
        self.supervisor = WorkerSupervisor(
            self.clock,
            2,
            ["python", "-m", "realtime.workers", "realtime"],
            {"HOME": "/h"},
            self.listeners,
            stopTimeout=10.0,
            backoff=Backoff(first=0.5, longest=4.0, stable=10.0),
        )
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.supervisor.startService()

    def process(self, n: int) -> Any:
        return self.clock.spawned[n]["process"]

    def messages(self) -> list[str]:
        return [formatEvent(event) for event in self.logged]

    def test_startsWorkersOnTheSockets(self) -> None:
        """
        Each worker gets the parent's pipe on 0, its output on 1 and 2, and
        every socket from 3 on, named in its handoff; the parent stops
        reading the sockets (it never accepts).
        """
        self.assertEqual(len(self.clock.spawned), 2)
        for index, spawned in enumerate(self.clock.spawned, 1):
            self.assertEqual(spawned["childFDs"], {0: "r", 1: 1, 2: 2, 3: 17, 4: 18})
            handoff = Handoff.decode(spawned["env"][ENVIRONMENT])
            self.assertEqual(handoff, Handoff(index, 2, 0, {"port": (3, "inet"), "api-port": (4, "inet")}))
            self.assertEqual(spawned["env"]["HOME"], "/h")
        self.assertEqual(self.clock.removedReaders, [self.listeners["port"].port, self.listeners["api-port"].port])
        self.assertEqual(self.supervisor.pids, [1000, 1001])
        self.assertIn("worker 2 of 2 started (pid 1001)", self.messages())

    def test_restartWithBackoff(self) -> None:
        """
        A dead worker is started again in its place after a delay that
        doubles with each quick death, up to the longest; a stable run
        resets it.  Each death is logged with how the worker ended.
        """
        delays = []
        for _ in range(5):
            self.clock.end(self.currentProcess(0), signal=9)
            before = len(self.clock.spawned)
            self.assertEqual(self.supervisor.pids[0], None)
            delay = self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds()
            delays.append(delay)
            self.clock.advance(delay)
            self.assertEqual(len(self.clock.spawned), before + 1)
            self.assertEqual(Handoff.decode(self.clock.spawned[-1]["env"][ENVIRONMENT]).index, 1)
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 4.0])
        self.assertIn(
            "worker 1 (pid 1000) ended on signal 9 (SIGKILL) after 0.0 s; starting it again in 0.5 s", self.messages()
        )
        self.clock.advance(10.0)
        self.clock.end(self.currentProcess(0), status=3)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds(), 0.5)
        self.assertIn("exited with status 3 after 10.0 s; starting it again in 0.5 s", self.messages()[-1])

    def currentProcess(self, slot: int) -> Any:
        """
        The process now in worker place C{slot}.
        """
        pid = self.supervisor.pids[slot]
        return next(s["process"] for s in self.clock.spawned if s["process"].pid == pid)

    def test_stopTermsThenKills(self) -> None:
        """
        At stop every worker gets SIGTERM; one still running after the
        timeout gets SIGKILL; the stop is done when all have ended, and
        nothing is restarted.
        """
        stopped = self.supervisor.stopService()
        self.assertEqual([self.process(n).signals for n in range(2)], [["TERM"], ["TERM"]])
        self.clock.end(self.process(0), signal=15)
        self.assertNoResult(stopped)
        self.clock.advance(10.0)
        self.assertEqual(self.process(1).signals, ["TERM", "KILL"])
        self.assertNoResult(stopped)
        self.clock.end(self.process(1), signal=9)
        self.successResultOf(stopped)
        self.clock.advance(100.0)
        self.assertEqual(len(self.clock.spawned), 2)
        self.assertIn("worker 1 (pid 1000) stopped: ended on signal 15 (SIGTERM)", self.messages())

    def test_stopCancelsRestart(self) -> None:
        """
        A worker waiting to be started again is not started once the
        parent stops.
        """
        self.clock.end(self.process(0), signal=9)
        stopped = self.supervisor.stopService()
        self.clock.end(self.process(1), signal=15)
        self.successResultOf(stopped)
        self.clock.advance(100.0)
        self.assertEqual(len(self.clock.spawned), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FamilyTests(SynchronousTestCase):
    def test_families(self) -> None:
        """
        TCP over IPv4 or IPv6 and Unix sockets can be handed over.
        """
        self.assertEqual(familyOf(IPv4Address("TCP", "127.0.0.1", 1)), "inet")
        self.assertEqual(familyOf(IPv6Address("TCP", "::1", 1)), "inet6")
        self.assertEqual(familyOf(UNIXAddress(b"/tmp/x")), "unix")
        self.assertRaises(ValueError, familyOf, object())


class ParentWatchTests(SynchronousTestCase):
    def test_endOfFile(self) -> None:
        """
        The watch reads the parent's pipe; when the last writer closes it,
        C{gone} is called, once.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        gone: list[bool] = []
        watch = ParentWatch(read, lambda: gone.append(True))
        self.assertTrue(verifyObject(IReadDescriptor, watch))
        watch.doRead()  # nothing to read yet: not gone
        os.write(write, b"x")
        watch.doRead()
        self.assertEqual(gone, [])
        os.close(write)
        watch.doRead()
        watch.doRead()
        self.assertEqual(gone, [True])


class AdoptedEndpointTests(SynchronousTestCase):
    def socketDescriptor(self) -> int:
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        return os.dup(listening.fileno())

    def test_plain(self) -> None:
        """
        A plain endpoint's socket is adopted as it is.
        """
        reactor = MemoryReactor()
        endpoint = adoptedEndpoint(reactor, "tcp:0", self.socketDescriptor(), "inet")
        self.assertIsInstance(endpoint, AdoptedStreamServerEndpoint)
        factory = Factory.forProtocol(Protocol)
        endpoint.listen(factory)
        self.assertIs(reactor.adoptedPorts[0][2], factory)
        self.assertIsNone(tlsContext("tcp:0:interface=127.0.0.1"))

    def test_tls(self) -> None:
        """
        A TLS endpoint's socket is adopted with TLS in front, with the
        certificate its description names.
        """
        endpoint = adoptedEndpoint(
            reactor := MemoryReactor(), sslEndpoint(*selfSigned()), self.socketDescriptor(), "inet"
        )
        self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))
        factory = Factory.forProtocol(Protocol)
        endpoint.listen(factory)
        wrapped = reactor.adoptedPorts[0][2]
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, factory)
