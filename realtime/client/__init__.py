"""
Clients of the server: the blocking push clients for backends
(L{realtime.client.blocking}, re-exported here, so a backend writes
C{from realtime.client import HttpPushClient}), the ``realtime-push``
command (L{realtime.client.cli}), and a Twisted subscriber of the channels
protocol for workers (L{realtime.client.subscriber}).

Importing this package loads the standard library only; the subscriber
imports Twisted and Autobahn when it is imported itself.
"""

from typing import Any

from realtime.client.blocking import (
    API_KEY_FILE,
    DEFAULT_URL,
    HttpPushClient,
    LineAnswer,
    LinePushClient,
    PushError,
    findApiKey,
)

__all__ = [  # noqa: F822 (signFirstPacket comes from __getattr__)
    "API_KEY_FILE", "DEFAULT_URL", "HttpPushClient", "LineAnswer", "LinePushClient", "PushError", "findApiKey",
    "signFirstPacket",
]


def __getattr__(name: str) -> Any:
    """
    C{signFirstPacket} lazily, as L{realtime.client.blocking} offers it: its
    module imports Twisted.
    """
    if name == "signFirstPacket":
        from realtime.client import blocking

        return blocking.signFirstPacket
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
