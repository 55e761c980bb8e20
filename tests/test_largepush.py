"""
A push to a large audience is spread over reactor turns: each turn writes
to a bounded number of sessions and starts a bounded number of offline
queueings, and the answer (with its exact counts) comes after the last.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from realtime.core.channelwire import Request
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.push.offline import QUEUE_STEP_COST
from realtime.push.router import Router
from realtime.store.memory import MemoryMessageStore
from realtime.values import Envelope, OfflineLimits, PushResult, ToChannel, ToUids
from tests.fakes import FakeSession, GatedStore, TurnClock
from tests.serverprocess import ServerProcess, api, linePush
from tests.support import buildRouter, publishing

LIMITS = OfflineLimits(maxCount=3, ttl=60)
UIDS = 10_000
#: fewer, for the slower paths: still many turns' worth
SOME = 3000
CHUNK = 1000


class LargePushTests(SynchronousTestCase):
    """
    A router whose fan-out writes at most C{CHUNK} sessions per turn.
    """

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.clock.advance(1000)
        self.store = GatedStore(MemoryMessageStore())
        self.store.gated = False

    def build(self, *namespaces: str) -> Router:
        rules = NamespaceRules(parseNamespaceSpec(s) for s in namespaces)
        router = buildRouter(self.clock, self.store, rules, offline=LIMITS)
        router.broker.fanout.chunkSize = CHUNK
        return router

    def turns(self, d: Any, measure: Any, limit: int = 1000) -> list[int]:
        """
        Run reactor turns until C{d} has fired; C{measure()} after each one.
        """
        done: list[object] = []
        d.addBoth(lambda result: done.append(True) or result)
        seen = [measure()]
        while not done:
            self.assertLess(len(seen), limit, "the push never finished")
            self.clock.advance(0)
            seen.append(measure())
        return seen

    def test_onlineUidsSpreadOverTurns(self) -> None:
        """
        A push to 10,000 uids with a connection each writes at most one
        chunk's worth of sessions per turn, over several turns, and is
        answered with every uid's count once the last is written.
        """
        router = self.build()
        sessions = [FakeSession(f"u{i}") for i in range(UIDS)]
        for session in sessions:
            router.sessionOpened(session)
        d = publishing(router, Envelope(ToUids(tuple(s.uid for s in sessions)), b"hello"))
        written = self.turns(d, lambda: sum(len(s.sent) for s in sessions))
        perTurn = [b - a for a, b in zip([0] + written, written, strict=False)]
        self.assertGreater(len(perTurn), 5, perTurn)
        self.assertLessEqual(max(perTurn), CHUNK, perTurn)
        result: PushResult = self.successResultOf(d)
        self.assertEqual(result.delivered, UIDS)
        self.assertEqual(result.uids, {s.uid: 1 for s in sessions})
        self.assertEqual(sessions[-1].texts, ["hello"])

    def test_laterPushStaysBehind(self) -> None:
        """
        A push asked for while a large one is still being written reaches a
        common uid after it.
        """
        router = self.build()
        sessions = [FakeSession(f"u{i}") for i in range(UIDS)]
        for session in sessions:
            router.sessionOpened(session)
        big = publishing(router, Envelope(ToUids(tuple(s.uid for s in sessions)), b"first"))
        small = publishing(router, Envelope(ToUids((sessions[-1].uid,)), b"second"))
        self.turns(small, lambda: None)
        self.assertTrue(big.called)
        self.assertEqual(sessions[-1].texts, ["first", "second"])

    def test_offlineQueueingSpreadOverTurns(self) -> None:
        """
        A push to 3,000 known uids without a connection starts a bounded
        number of store operations per turn, and is answered with every uid
        queued.
        """
        router = self.build()
        uids = tuple(f"u{i}" for i in range(SOME))
        self.successResultOf(self.store.inner.markSeen(dict.fromkeys(uids, self.clock.seconds())))
        self.store.gated = True
        asked: list[int] = []

        def measure() -> int:
            asked.append(self.store.waiting)
            self.store.open()
            return asked[-1]

        d = publishing(router, Envelope(ToUids(uids), b"later"))
        perTurn = self.turns(d, measure)
        self.assertGreater(len([n for n in perTurn if n]), 5, perTurn)
        # each turn: the wasSeen of the uids started, the queueOffline of
        # those whose wasSeen the last turn answered
        self.assertLessEqual(max(perTurn), 2 * (CHUNK // QUEUE_STEP_COST + 1), perTurn)
        result: PushResult = self.successResultOf(d)
        self.assertEqual((result.delivered, result.queued, result.refused), (0, uids, ()))
        self.assertEqual(router.queuedPushes, SOME)

    def test_channelSpreadOverTurns(self) -> None:
        """
        A channel message to 3,000 subscribers is written a chunk per turn
        and answered with the count.
        """
        router = self.build("news:*:history=10:public=true")
        sessions = [FakeSession(f"u{i}") for i in range(SOME)]
        for session in sessions:
            router.sessionOpened(session)
        for n, session in enumerate(sessions):
            self.successResultOf(router.channels.request(session, Request(n, "subscribe", "news:1")))
        before = [len(s.sent) for s in sessions]
        d = publishing(router, Envelope(ToChannel("news:1"), json.dumps("x").encode()))
        written = self.turns(d, lambda: sum(len(s.sent) for s in sessions) - sum(before))
        perTurn = [b - a for a, b in zip([0] + written, written, strict=False)]
        self.assertLessEqual(max(perTurn), CHUNK, perTurn)
        self.assertEqual(self.successResultOf(d).delivered, SOME)


class LargePushServerTests(SynchronousTestCase):
    """
    A real server keeps answering C{/healthz} while it works through pushes
    of the largest size allowed, and gives their memory back.
    """

    def setUp(self) -> None:
        self.server = ServerProcess("--max-message-size", "4194304").start()
        self.addCleanup(self.server.stop)

    def healthz(self) -> float:
        """
        How long one C{/healthz} takes, on a new connection each time.
        """
        start = time.monotonic()
        url = f"http://127.0.0.1:{self.server.ports['port']}/healthz"
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        return time.monotonic() - start

    def test_healthzDuringLargePushes(self) -> None:
        """
        Three pushes of 10,000 uids each (the default limit, so allowed),
        on the line port and the HTTP API at once: every C{/healthz} during
        them answers within half a second, and every push is answered.
        """
        uids = [f"user-{i}" for i in range(10_000)]
        line = json.dumps({"uid": uids, "msg": "hi"}).encode() + b"\n"
        body = json.dumps({"uid": uids, "data": "hi"}).encode()
        answers: dict[str, Any] = {}

        def pushLines() -> None:
            answers["line"] = linePush(self.server.ports["push-port"], line, line)

        def pushHttp() -> None:
            answers["http"] = api(self.server, "POST", "/api/push", body)

        pushers = [threading.Thread(target=pushLines), threading.Thread(target=pushHttp)]
        self.healthz()
        for pusher in pushers:
            pusher.start()
        times = []
        while any(pusher.is_alive() for pusher in pushers):
            times.append(self.healthz())
            time.sleep(0.02)
        for pusher in pushers:
            pusher.join()
        self.assertEqual(answers["line"], [b"fail", b"fail"])
        self.assertEqual(answers["http"][0], 200)
        self.assertEqual(answers["http"][1]["status"], "offline")
        self.assertGreater(len(times), 3, "the pushes were too quick to observe")
        self.assertLess(max(times), 0.5, sorted(times)[-5:])

    def test_tooManyUidsRefused(self) -> None:
        """
        One uid over the limit is refused on both ports with the documented
        errors.
        """
        uids = [f"user-{i}" for i in range(10_001)]
        line = json.dumps({"uid": uids}).encode() + b"\n"
        self.assertEqual(
            linePush(self.server.ports["push-port"], line),
            [b"error: too many uids (10001; at most 10000 per push, --max-uids-per-push)"],
        )
        status, answer = api(self.server, "POST", "/api/push", json.dumps({"uid": uids, "data": 1}).encode())
        self.assertEqual((status, answer["error"]["code"]), (413, "too_many_uids"))
