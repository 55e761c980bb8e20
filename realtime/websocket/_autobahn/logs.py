"""
Autobahn's logging, configured.

Autobahn logs every frame at debug level through txaio's loggers; twistd's
log observer keeps everything, so the level is set where txaio filters.
txaio makes its API at import time for the framework in use, so type
checkers cannot see C{set_global_log_level}.
"""

from __future__ import annotations

import txaio


def setAutobahnLogLevel(level: str = "info") -> None:
    """
    Drop Autobahn's (txaio's) log events below C{level}.
    """
    txaio.set_global_log_level(level)  # type: ignore[attr-defined]
