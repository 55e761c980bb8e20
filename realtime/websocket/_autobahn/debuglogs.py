"""
Cheap argument formatting for Autobahn's debug logging.

Autobahn builds the arguments of its debug log calls eagerly, whether debug
logging is on or not: C{hltype(self.dataReceived)} and C{hlval(...)} run on
every read and several times per handshake, inspecting the function and
styling its name with colours (C{click}).  Measured with cProfile on the
connect path that is some 20 microseconds per connection, out of about 110,
spent formatting messages that are then discarded (txaio drops debug events
below its level).

L{useCheapFormatting} replaces the two helpers in the Autobahn modules that
call them on those paths with plain equivalents: the debug messages stay
meaningful when debug logging is turned on, just without colours.  The right
fix belongs upstream (build the arguments only when the level is enabled).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted import websocket as _twistedWebsocket
from autobahn.websocket import protocol as _websocketProtocol

_PATCHED_MODULES = (_websocketProtocol, _twistedWebsocket)


def plainType(obj: Any) -> str:
    """
    C{<module.qualname>} of a function or method, uncoloured.
    """
    return f"<{getattr(obj, '__qualname__', type(obj).__qualname__)}>"


def plainValue(value: Any, color: str = "white", bold: bool = True) -> Any:
    """
    The value itself: the log formatter makes it text if the event is kept.
    """
    return value


def useCheapFormatting() -> None:
    """
    Install the plain helpers (idempotent).
    """
    for module in _PATCHED_MODULES:
        module.hltype = plainType  # type: ignore[attr-defined]
        module.hlval = plainValue  # type: ignore[attr-defined]
