"""
A push to a large audience is spread over reactor turns: each turn writes
to a bounded number of sessions and starts a bounded number of offline
queueings, and the answer (with its exact counts) comes after the last.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from realtime.channelproto import Request
from realtime.hub import Hub
from realtime.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.offline import QUEUE_STEP_COST
from realtime.store.memory import MemoryMessageStore
from realtime.values import Envelope, OfflineLimits, PushResult, ToChannel, ToUids
from tests.fakes import FakeSession, GatedStore
from tests.support import buildHub
from tests.test_delivery import TurnClock

LIMITS = OfflineLimits(maxCount=3, ttl=60)
UIDS = 10_000
#: fewer, for the slower paths: still many turns' worth
SOME = 3000
CHUNK = 1000


class LargePushTests(SynchronousTestCase):
    """
    A hub whose fan-out writes at most C{CHUNK} sessions per turn.
    """

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.clock.advance(1000)
        self.store = GatedStore(MemoryMessageStore())
        self.store.gated = False

    def build(self, *namespaces: str) -> Hub:
        rules = NamespaceRules(parseNamespaceSpec(s) for s in namespaces)
        hub = buildHub(self.clock, self.store, rules, offline=LIMITS)
        hub.broker.fanout.chunkSize = CHUNK
        return hub

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
        hub = self.build()
        sessions = [FakeSession(f"u{i}") for i in range(UIDS)]
        for session in sessions:
            hub.sessionOpened(session)
        d = hub.publish(Envelope(ToUids(tuple(s.uid for s in sessions)), b"hello"))
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
        hub = self.build()
        sessions = [FakeSession(f"u{i}") for i in range(UIDS)]
        for session in sessions:
            hub.sessionOpened(session)
        big = hub.publish(Envelope(ToUids(tuple(s.uid for s in sessions)), b"first"))
        small = hub.publish(Envelope(ToUids((sessions[-1].uid,)), b"second"))
        self.turns(small, lambda: None)
        self.assertTrue(big.called)
        self.assertEqual(sessions[-1].texts, ["first", "second"])

    def test_offlineQueueingSpreadOverTurns(self) -> None:
        """
        A push to 3,000 known uids without a connection starts a bounded
        number of store operations per turn, and is answered with every uid
        queued.
        """
        hub = self.build()
        uids = tuple(f"u{i}" for i in range(SOME))
        self.successResultOf(self.store.inner.markSeen(dict.fromkeys(uids, self.clock.seconds())))
        self.store.gated = True
        asked: list[int] = []

        def measure() -> int:
            asked.append(self.store.waiting)
            self.store.open()
            return asked[-1]

        d = hub.publish(Envelope(ToUids(uids), b"later"))
        perTurn = self.turns(d, measure)
        self.assertGreater(len([n for n in perTurn if n]), 5, perTurn)
        # each turn: the wasSeen of the uids started, the queueOffline of
        # those whose wasSeen the last turn answered
        self.assertLessEqual(max(perTurn), 2 * (CHUNK // QUEUE_STEP_COST + 1), perTurn)
        result: PushResult = self.successResultOf(d)
        self.assertEqual((result.delivered, result.queued, result.refused), (0, uids, ()))
        self.assertEqual(hub.queuedPushes, SOME)

    def test_channelSpreadOverTurns(self) -> None:
        """
        A channel message to 3,000 subscribers is written a chunk per turn
        and answered with the count.
        """
        hub = self.build("news:*:history=10:public=true")
        sessions = [FakeSession(f"u{i}") for i in range(SOME)]
        for session in sessions:
            hub.sessionOpened(session)
        for n, session in enumerate(sessions):
            self.successResultOf(hub.request(session, Request(n, "subscribe", "news:1")))
        before = [len(s.sent) for s in sessions]
        d = hub.publish(Envelope(ToChannel("news:1"), json.dumps("x").encode()))
        written = self.turns(d, lambda: sum(len(s.sent) for s in sessions) - sum(before))
        perTurn = [b - a for a, b in zip([0] + written, written, strict=False)]
        self.assertLessEqual(max(perTurn), CHUNK, perTurn)
        self.assertEqual(self.successResultOf(d).delivered, SOME)
