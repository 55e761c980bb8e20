"""
Tests for L{realtime.tap}'s wiring helpers.
"""

from twisted.trial.unittest import SynchronousTestCase

from realtime.tap import DEFAULT_BACKLOG, withBacklog


class BacklogTests(SynchronousTestCase):
    """
    Listeners get a backlog that survives a reconnect storm unless one is given.
    """

    def test_added(self) -> None:
        """
        TCP, TLS and Unix endpoints without a backlog get L{DEFAULT_BACKLOG}.
        """
        for description in ("tcp:8080", "tcp:8081:interface=127.0.0.1", "ssl:443:privateKey=k.pem", "unix:/tmp/s"):
            self.assertEqual(withBacklog(description), f"{description}:backlog={DEFAULT_BACKLOG}")

    def test_kept(self) -> None:
        """
        A backlog given, or an endpoint type without one, is left alone.
        """
        for description in ("tcp:80:backlog=5", "systemd:domain=INET:index=0"):
            self.assertEqual(withBacklog(description), description)
