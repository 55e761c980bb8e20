"""
The Python cost of one handshake and of one unicast push, in-process.

The suite (``run.py``) measures the server whole, kernel included; this
measures only our Python code and Autobahn's and Twisted's under it, with
in-memory transports instead of sockets, so a change to the hot paths can be
judged in seconds and profiled deterministically (``--profile`` prints
cProfile's top functions).  The server's collector settings
(L{realtime.ops.gctuning}) apply, as in ``twistd realtime``.

    .venv/bin/python bench/inprocess.py handshake   # us per connection: handshake, first message
    .venv/bin/python bench/inprocess.py unicast     # us per push through the line port
    .venv/bin/python bench/inprocess.py unicast --profile
    .venv/bin/python bench/inprocess.py unicast --cpu   # CPU time, not wall time: steadier on a shared machine
    .venv/bin/python bench/inprocess.py unicast --offline   # through offline queues, as twistd's defaults
    .venv/bin/python bench/inprocess.py inbound     # us per message a client sends (rate limit included)

Absolute numbers are for comparing commits on one machine, not peers.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from realtime.api.lineproto import LinePushFactory  # noqa: E402
from realtime.auth.firstpacket import FirstPacketAuthenticator  # noqa: E402
from realtime.config.options import DEFAULTS  # noqa: E402
from realtime.core.limits import LOOPBACK, ConnectionLimits, ProxyTrust, parseRate  # noqa: E402
from realtime.ops.gctuning import THRESHOLDS  # noqa: E402
from realtime.ops.instrument import InstrumentedPublisher, LatencyHistogram  # noqa: E402
from realtime.routing.uid import UidStrategy  # noqa: E402
from realtime.store.memory import MemoryMessageStore  # noqa: E402
from realtime.tap import acceptDeflate  # noqa: E402
from realtime.values import OfflineLimits  # noqa: E402
from realtime.web.sharedport import SharedPortFactory  # noqa: E402
from realtime.websocket.factory import RealtimeServerFactory  # noqa: E402
from tests.support import TolerantTransport, buildFactory, buildRouter, clientFrame, handshake  # noqa: E402

CONNECTIONS = 10_000

#: what is timed: wall time, or with --cpu this process's CPU time (steadier
#: on a machine other work shares)
CLOCK: Callable[[], float] = time.perf_counter


#: with --offline, pushes go through offline queues (in a memory store), as
#: with ``twistd realtime``'s defaults; without, straight to the broker
OFFLINE = False


def serverFactory() -> RealtimeServerFactory:
    """
    The WebSocket factory as ``twistd realtime`` configures it.
    """
    router = None
    if OFFLINE:
        router = buildRouter(reactor, MemoryMessageStore(), offline=OfflineLimits(100, 86400.0))
    limits = ConnectionLimits(
        # the total from the open-file limit would not fit in-memory transports
        CONNECTIONS,
        DEFAULTS["max-connections-per-ip"],
        DEFAULTS["max-connections-per-uid"],
        ProxyTrust(LOOPBACK),
    )
    factory = buildFactory(
        FirstPacketAuthenticator(reactor, 10.0, None),
        UidStrategy(),
        reactor,
        router=router,
        limits=limits,
        clientRate=parseRate("client-rate", DEFAULTS["client-rate"]),
    )
    factory.setProtocolOptions(
        autoPingInterval=0, openHandshakeTimeout=0, perMessageCompressionAccept=acceptDeflate, allowedOrigins=["*"]
    )
    return factory


def endTurn() -> None:
    """
    What the reactor does at the end of a turn: run C{callLater(0)} calls
    (the turn writer's flush).
    """
    reactor.runUntilCurrent()  # type: ignore[attr-defined]


def connectAll(front: SharedPortFactory, count: int, parts: list[float] | None = None) -> list[Any]:
    """
    Connect C{count} clients through the front port, each sending its uid.
    """
    request = handshake("/")
    opened = []
    clock = CLOCK
    for i in range(count):
        transport = TolerantTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1024 + i % 60000))
        sniffer = front.buildProtocol(transport.getPeer())
        sniffer.makeConnection(transport)
        transport.protocol = sniffer
        t0 = clock()
        sniffer.dataReceived(request)
        t1 = clock()
        transport.protocol.dataReceived(clientFrame(b"u%d" % i))
        t2 = clock()
        if parts is not None:
            parts[0] += t1 - t0
            parts[1] += t2 - t1
        opened.append(transport.protocol)
        if i % 64 == 0:
            endTurn()
    endTurn()
    return opened


def handshakes(rounds: int, profile: cProfile.Profile | None) -> None:
    factory = serverFactory()
    front = SharedPortFactory(factory, None, factory.wheel)
    for _ in range(rounds):
        parts = [0.0, 0.0]
        if profile is not None:
            profile.enable()
        sessions = connectAll(front, CONNECTIONS, parts)
        if profile is not None:
            profile.disable()
        assert len(factory.registry) == CONNECTIONS
        t0 = CLOCK()
        for session in sessions:
            session.connectionLost(Failure(ConnectionDone()))
        lost = CLOCK() - t0
        us = [1e6 * x / CONNECTIONS for x in (*parts, lost)]
        print(f"us per connection: handshake {us[0]:.1f}, first message {us[1]:.1f}, close {us[2]:.1f}")


def pushBatches(uids: int, count: int, size: int = 256) -> list[bytes]:
    """
    C{count} reads of the line port, C{size} pushes each to random uids
    C{u0}...: the same every run (a fixed seed).
    """
    rnd = random.Random(1)
    return [
        b"".join(
            b'{"uid":"u%d","seq":%d,"t":1234567890123,"pad":"xxxxxxxxxx"}\n' % (rnd.randrange(uids), i)
            for i in range(size)
        )
        for _ in range(count)
    ]


def unicast(rounds: int, profile: cProfile.Profile | None) -> None:
    factory = serverFactory()
    front = SharedPortFactory(factory, None, factory.wheel)
    sessions = connectAll(front, CONNECTIONS)
    for session in sessions:
        session.transport.clear()
    line = LinePushFactory(
        InstrumentedPublisher(factory.router, "line", LatencyHistogram(), reactor), 65536, factory.writer
    ).buildProtocol(None)
    backend = StringTransport()
    line.makeConnection(backend)
    batches = pushBatches(CONNECTIONS, 200)
    for _ in range(rounds):
        if profile is not None:
            profile.enable()
        t0 = CLOCK()
        for batch in batches:
            line.dataReceived(batch)
            endTurn()
        elapsed = CLOCK() - t0
        if profile is not None:
            profile.disable()
        answers = backend.value().split(b"\n")[:-1]
        backend.clear()
        assert answers == [b"ok"] * (256 * len(batches)), set(answers)
        for session in sessions:
            session.transport.clear()
        print(f"us per push: {1e6 * elapsed / (256 * len(batches)):.2f}")


def inbound(rounds: int, profile: cProfile.Profile | None) -> None:
    """
    Every connection sends messages (uid routing answers each with an
    error frame: it is push-only), within the default rate.
    """
    factory = serverFactory()
    front = SharedPortFactory(factory, None, factory.wheel)
    sessions = connectAll(front, CONNECTIONS)
    frame = clientFrame(b'{"type":"chat","text":"hello"}')
    perConnection = 20
    for _ in range(rounds):
        for session in sessions:
            session.transport.clear()
        if profile is not None:
            profile.enable()
        t0 = CLOCK()
        for i, session in enumerate(sessions):
            for _ in range(perConnection):
                session.dataReceived(frame)
            if i % 64 == 0:
                endTurn()
        endTurn()
        elapsed = CLOCK() - t0
        if profile is not None:
            profile.disable()
        assert all(session.state == session.STATE_OPEN for session in sessions)
        print(f"us per inbound message: {1e6 * elapsed / (perConnection * CONNECTIONS):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["handshake", "unicast", "inbound"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions (slows everything)")
    parser.add_argument("--cpu", action="store_true", help="time this process's CPU use, not the wall clock")
    parser.add_argument("--offline", action="store_true", help="push through offline queues, as twistd's defaults do")
    args = parser.parse_args(argv)
    global CLOCK, OFFLINE
    if args.cpu:
        CLOCK = time.process_time
    OFFLINE = args.offline
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    profile = cProfile.Profile() if args.profile else None
    run: Callable[[int, cProfile.Profile | None], None] = {"handshake": handshakes, "unicast": unicast, "inbound": inbound}[
        args.what
    ]
    run(args.rounds, profile)
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
