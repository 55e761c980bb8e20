"""
The protocol options Autobahn copies onto every connection, as class
attributes instead.

Autobahn copies some 30 options (C{CONFIG_ATTRS}) from the factory into
every protocol instance, and pretty-prints them for a debug log that is off.
Here Autobahn's defaults are class attributes of the server connection
(L{autobahnDefaults}), and each factory builds one subclass holding the
options it changed (L{configuredClass}): less memory per idle connection,
faster handshakes, and a protocol class that shows what was configured.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketServerFactory as _GenericServerFactory

#: "no such attribute"
MISSING = object()


def sameOption(current: object, value: object) -> bool:
    """
    Whether a protocol option already has C{value} (same type too: C{0} is
    not C{False}).
    """
    return current is value or (type(current) is type(value) and current == value)


def autobahnDefaults() -> dict[str, Any]:
    """
    The protocol options of a server factory Autobahn made without options
    (its framework-independent one: no reactor is imported), but for the
    per-factory callable C{perMessageCompressionAccept}.
    """
    probe = _GenericServerFactory()
    return {
        name: getattr(probe, name)
        for name in WebSocketServerProtocol.CONFIG_ATTRS
        if not callable(getattr(probe, name))
    }


def configuredClass(protocol: type[Any], factory: Any) -> type[Any]:
    """
    A subclass of C{protocol} carrying C{factory}'s protocol options that
    differ from what C{protocol} already has, as class attributes, and no
    C{CONFIG_ATTRS} left to copy at connection.
    """
    attributes: dict[str, Any] = {"CONFIG_ATTRS": ()}
    for name in WebSocketServerProtocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        if callable(value):
            # a function stored on a class would become a method: keep
            # callables (perMessageCompressionAccept) plain
            attributes[name] = staticmethod(value)
        elif not sameOption(getattr(protocol, name, MISSING), value):
            attributes[name] = value
    return type(protocol.__name__, (protocol,), attributes)
