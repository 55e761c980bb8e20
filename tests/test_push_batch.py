"""
Tests for L{realtime.push.batch}: a batch's outcomes, one per push, in order.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from realtime.push.batch import gathered, oneByOne
from realtime.values import Envelope, PushResult, ToUids


class GatheredTests(SynchronousTestCase):
    """
    L{gathered} waits for every Deferred among the outcomes, keeping
    failures as values in their places.
    """

    def test_nothingToWaitFor(self) -> None:
        """
        Outcomes without a Deferred are answered at once, as they are.
        """
        failure = Failure(ValueError("x"))
        self.assertEqual(self.successResultOf(gathered([PushResult(1), failure])), [PushResult(1), failure])

    def test_waitsInPlace(self) -> None:
        """
        Each Deferred's result (or failure) takes its place, whatever order
        they fire in, and the failure is consumed, not logged as unhandled.
        """
        first: Deferred[Any] = Deferred()
        second: Deferred[Any] = Deferred()
        d = gathered([first, PushResult(1), second])
        second.errback(ValueError("queue full"))
        self.assertNoResult(d)
        first.callback(PushResult(2))
        outcomes = self.successResultOf(d)
        self.assertEqual(outcomes[:2], [PushResult(2), PushResult(1)])
        self.assertTrue(outcomes[2].check(ValueError))


class OneByOneTests(SynchronousTestCase):
    """
    L{oneByOne} publishes a batch through a plain publish, in order.
    """

    def test_inOrderEachAlone(self) -> None:
        """
        Every envelope is published in order; one that raises or fails
        fails alone in its place.
        """
        seen: list[bytes] = []

        def publish(envelope: Envelope) -> Any:
            seen.append(envelope.payload)
            if envelope.payload == b"raise":
                raise RuntimeError("bug")
            if envelope.payload == b"fail":
                return fail(ValueError("refused"))
            return succeed(PushResult(1)) if envelope.payload == b"later" else PushResult(0)

        batch = [Envelope(ToUids(("u",)), p) for p in (b"now", b"raise", b"later", b"fail")]
        outcomes = self.successResultOf(oneByOne(publish, batch))
        self.assertEqual(seen, [b"now", b"raise", b"later", b"fail"])
        self.assertEqual(outcomes[0], PushResult(0))
        self.assertTrue(outcomes[1].check(RuntimeError))
        self.assertEqual(outcomes[2], PushResult(1))
        self.assertTrue(outcomes[3].check(ValueError))
