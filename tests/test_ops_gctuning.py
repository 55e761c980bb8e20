"""
Tests for L{realtime.ops.gctuning}.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from realtime.ops.gctuning import GCTuning


class GarbageCollectorTuningTests(SynchronousTestCase):
    """
    Tuned while running, Python's own settings once stopped.
    """

    def test_startStop(self) -> None:
        """
        Starting raises the thresholds and freezes what exists; stopping
        puts back the thresholds and unfreezes.
        """
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        tuning = GCTuning((12345, 7, 3))
        tuning.startService()
        self.assertEqual(gc.get_threshold(), (12345, 7, 3))
        self.assertGreater(gc.get_freeze_count(), 0)
        tuning.stopService()
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)
