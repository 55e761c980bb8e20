"""
Tests for L{realtime.delivery.timers}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.delivery.timers import TimeoutWheel


class TimeoutWheelTests(SynchronousTestCase):
    """
    Many timeouts share one reactor call.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.wheel = TimeoutWheel(self.clock, resolution=0.5)
        self.fired: list[str] = []

    def test_firesNotBeforeDeadline(self) -> None:
        """
        A timeout fires at its deadline rounded up to the resolution, not before.
        """
        self.wheel.schedule(1.2, lambda: self.fired.append("a"))
        self.clock.advance(1.19)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.31)
        self.assertEqual(self.fired, ["a"])

    def test_oneDelayedCallForMany(self) -> None:
        """
        A thousand timeouts hold one C{DelayedCall} on the reactor.
        """
        for i in range(1000):
            self.wheel.schedule(10 + (i % 7), lambda: None)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.wheel), 1000)
        self.clock.advance(20)
        self.assertEqual(len(self.wheel), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_order(self) -> None:
        """
        Timeouts fire in deadline order, an earlier one re-arming the wheel.
        """
        self.wheel.schedule(5, lambda: self.fired.append("late"))
        self.wheel.schedule(1, lambda: self.fired.append("early"))
        self.clock.advance(1)
        self.assertEqual(self.fired, ["early"])
        self.clock.advance(4)
        self.assertEqual(self.fired, ["early", "late"])

    def test_cancel(self) -> None:
        """
        A cancelled timeout never fires; cancelling twice is harmless.
        """
        t = self.wheel.schedule(1, lambda: self.fired.append("x"))
        self.assertTrue(t.active)
        t.cancel()
        t.cancel()
        self.assertFalse(t.active)
        self.clock.advance(2)
        self.assertEqual(self.fired, [])

    def test_failingCallbackLogged(self) -> None:
        """
        One failing callback is logged and does not stop the others.
        """
        self.wheel.schedule(1, lambda: 1 / 0)
        self.wheel.schedule(1, lambda: self.fired.append("ok"))
        self.clock.advance(1)
        self.assertEqual(self.fired, ["ok"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_scheduleFromCallback(self) -> None:
        """
        A callback may schedule another timeout.
        """
        self.wheel.schedule(1, lambda: self.wheel.schedule(1, lambda: self.fired.append("second")))
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.fired, ["second"])

    def test_stop(self) -> None:
        """
        C{stop} cancels everything and leaves no call on the reactor.
        """
        self.wheel.schedule(1, lambda: self.fired.append("x"))
        self.wheel.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(2)
        self.assertEqual(self.fired, [])
