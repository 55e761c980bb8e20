"""
Brokers: how a message taken by this node reaches the sessions it is for.
"""

from __future__ import annotations

__all__ = ["BrokerUnavailable"]


class BrokerUnavailable(Exception):
    """
    A broker of several nodes cannot reach its server (Redis), so a message
    could not be published: C{str()} says why, for the backend's answer
    (HTTP 503, an C{error:} line), which is never a false C{ok}.  The broker
    logs the outage itself, not once per push.
    """
