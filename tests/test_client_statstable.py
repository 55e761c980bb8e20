"""
Tests for L{realtime.client.statstable}: the table ``realtime-push stats`` prints.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from realtime.client.statstable import formatStats, label


class TableTests(SynchronousTestCase):
    """
    Words for names, sections for groups, units for times.
    """

    def test_table(self) -> None:
        """
        Rows are aligned; nested counters are indented under their group;
        reasons are kept as they are; an empty group says none.
        """
        table = formatStats(
            {
                "connections": 3,
                "authFailures": {"bad signature": 2},
                "linePort": {"ok": 1, "fail": 0},
                "slowConsumers": 0,
                "brokerUp": True,
                "offlineQueued": 0,
                "httpApi": {},
                "uptime": 3600.5,
                "reactorLag": 0.0012,
            }
        )
        self.assertEqual(
            table.splitlines(),
            [
                "connections      3",
                "auth failures",
                "  bad signature  2",
                "line port",
                "  ok             1",
                "  fail           0",
                "slow consumers   0",
                "broker up        yes",
                "offline queued   0",
                "HTTP API         none",
                "uptime           3600 s",
                "reactor lag      0.001 s",
            ],
        )

    def test_label(self) -> None:
        """
        camelCase becomes words.
        """
        self.assertEqual(label("sessionsOpened"), "sessions opened")
        self.assertEqual(label("connections"), "connections")
