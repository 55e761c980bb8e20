"""
Every private name of Autobahn, Twisted and txaio that this server relies on,
looked up here, once, at import.

The WebSocket shell gets its speed and its strictness by doing some of
Autobahn's work itself (C{realtime.websocket._autobahn.connection}), and the
writer sends straight to the socket when Twisted holds nothing back
(C{realtime.delivery.writer}); the server's ports fail to start when they
cannot listen (C{realtime.websocket._autobahn.endpoints}).  All depend on names no release promises to
keep.  They are all named in this module and nowhere else: a module-level
helper or constant is imported from here; a method or class attribute is
checked to exist on its class; an instance attribute is checked to be set by
the function that sets it (by the function's code object, so without reading
source).  An upgrade that renames or drops one fails at C{import realtime}
with L{UnsupportedVersion} naming the symbol and the versions that are known
to work, not later as an C{AttributeError} on a live connection.

C{tests/test_websocket_privates.py} checks that no other module of C{realtime} touches a
private name of these libraries, and that every name used in this package is
listed in L{CHECKED}.
"""

from __future__ import annotations

from asyncio import AbstractEventLoop
from importlib.metadata import version as _installed
from types import FunctionType, ModuleType
from typing import Any, Callable

import autobahn.util as _autobahnUtil
import autobahn.websocket.protocol as _websocketProtocol
from autobahn.twisted.websocket import WebSocketAdapterProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.protocol import WebSocketServerFactory as _GenericServerFactory
from autobahn.websocket.protocol import WebSocketServerProtocol as _GenericServerProtocol
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import abstract
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

#: the versions setup.py admits and CI tests (the oldest and the newest)
SUPPORTED = "autobahn>=26.11,<27 and twisted>=26.10,<27"

#: every private name this package relies on, as C{"owner.name"} or (for an
#: instance attribute) C{"name"}; the test of the room compares it with the
#: names the package really uses
CHECKED: list[str] = []

#: the private instance attributes among them (which no class attribute
#: shows), so that the test of the room can look for them everywhere
ATTRIBUTES: list[str] = []


class UnsupportedVersion(ImportError):
    """
    An installed Autobahn or Twisted lacks a private name this server uses.
    """


def _fail(what: str) -> UnsupportedVersion:
    installed = ", ".join(f"{name} {_installed(name)}" for name in ("autobahn", "twisted", "txaio"))
    return UnsupportedVersion(
        f"realtime relies on {what}, which the installed libraries ({installed}) do not have; "
        f"it supports {SUPPORTED} (realtime/websocket/_autobahn/privates.py lists what it relies on)"
    )


def _ownerName(owner: Any) -> str:
    return getattr(owner, "__qualname__", None) or owner.__name__


def _fullName(owner: Any) -> str:
    if isinstance(owner, ModuleType):
        return str(owner.__name__)
    return f"{owner.__module__}.{owner.__qualname__}"


def _lookup(owner: Any, name: str) -> Any:
    """
    C{owner.name}, or L{UnsupportedVersion}.
    """
    CHECKED.append(f"{_ownerName(owner)}.{name}")
    try:
        return getattr(owner, name)
    except AttributeError:
        raise _fail(f"{_fullName(owner)}.{name}") from None


def _assignedBy(function: Callable[..., Any], name: str) -> str:
    """
    C{name}, if C{function} (a plain function or method) names it as an
    attribute; else L{UnsupportedVersion}.
    """
    CHECKED.append(name)
    ATTRIBUTES.append(name)
    code = function.__code__ if isinstance(function, FunctionType) else None
    if code is None or name not in code.co_names:
        raise _fail(f"{function.__module__}.{function.__qualname__} setting .{name}")
    return name


# -- Autobahn: module-level helpers ------------------------------------------

#: C{autobahn.util}: whether a connection was lost to a TLS failure, and its text
isTlsError: Callable[[BaseException], bool] = _lookup(_autobahnUtil, "_is_tls_error")
tlsReason: Callable[[BaseException], str] = _lookup(_autobahnUtil, "_maybe_tls_reason")

#: C{autobahn.websocket.protocol}: the token grammar of an HTTP header name,
#: and Autobahn's origin parsing and matching (the fast handshake refuses
#: exactly what Autobahn's path would)
HTTP_FIELD_NAME = _lookup(_websocketProtocol, "_HTTP_FIELD_NAME")
isSameOrigin: Callable[[str, str, int, Any], bool] = _lookup(_websocketProtocol, "_is_same_origin")
urlToOrigin: Callable[[str], str] = _lookup(_websocketProtocol, "_url_to_origin")
#: RFC 6455's GUID, appended to a key for the accept hash
WS_MAGIC: bytes = _lookup(WebSocketProtocol, "_WS_MAGIC")

# -- Autobahn: methods of the protocol ---------------------------------------

#: the framework-independent halves of the Twisted adapter's methods: what
#: they do minus debug logging (called instead of the adapter's)
dataReceived = _lookup(WebSocketProtocol, "_dataReceived")
connectionLost = _lookup(WebSocketProtocol, "_connectionLost")
#: fail the connection with a close code (as Autobahn's own limits do)
failConnection = _lookup(WebSocketProtocol, "_fail_connection")
#: the adapter's opening step (TLS channel id, then C{onOpen})
onOpen = _lookup(WebSocketAdapterProtocol, "_onOpen")
#: lose or abort the transport (the sending half flushes first)
closeConnection = _lookup(WebSocketAdapterProtocol, "_closeConnection")
#: parse a C{Sec-WebSocket-Extensions} header
parseExtensionsHeader = _lookup(WebSocketProtocol, "_parseExtensionsHeader")
#: the trickled-send queue's drain, which a protocol must not shadow
_lookup(WebSocketProtocol, "_send")
_lookup(WebSocketProtocol, "_trigger")

# -- Autobahn: attributes ------------------------------------------------------

#: the adapter's transport details (read by C{_onOpen} and
#: C{transport_details}); set by our connection set-up
TRANSPORT_DETAILS = _assignedBy(WebSocketAdapterProtocol.connectionMade, "_transport_details")
#: the client's key, read by C{succeedHandshake}; set by the fast handshake
WSKEY = _assignedBy(_GenericServerProtocol.processHandshake, "_wskey")
#: the permessage-deflate state, C{None} until negotiated
PER_MESSAGE_COMPRESS = _assignedBy(WebSocketProtocol._connectionMade, "_perMessageCompress")
#: the factory's batched timer, which Autobahn's handshake timeout uses
BATCHED_TIMER = _assignedBy(_GenericServerFactory.__init__, "_batched_timer")

# Public names, but internal state: what the strict corrections, the fast
# handshake and the idle-memory trims read, drop or reset.
_assignedBy(WebSocketProtocol.__init__, "is_closed")
_assignedBy(WebSocketProtocol.__init__, "is_open")
_assignedBy(WebSocketProtocol.processData, "current_frame")
_assignedBy(WebSocketProtocol.processData, "current_frame_masker")
_assignedBy(WebSocketProtocol.onFrameData, "utf8validateLast")
_assignedBy(WebSocketProtocol.onFrameEnd, "inside_message")
_assignedBy(WebSocketProtocol.onMessageEnd, "message_data")
_assignedBy(WebSocketProtocol.onMessageBegin, "message_is_binary")
_assignedBy(WebSocketProtocol._connectionMade, "send_queue")

# -- Twisted -------------------------------------------------------------------

#: bytes a TCP transport took in C{write} and has not yet moved to
#: C{dataBuffer} (C{FileDescriptor.write} appends to a list first)
_assignedBy(abstract.FileDescriptor.__init__, "_tempDataLen")
#: an endpoint service's listening Deferred, and whether a failure to bind
#: raises from C{privilegedStartService} (C{realtime.websocket._autobahn.endpoints})
WAITING_FOR_PORT = _assignedBy(StreamServerEndpointService.__init__, "_waitingForPort")
_lookup(StreamServerEndpointService, "_raiseSynchronously")


#: the event loop Twisted's asyncio reactor runs, where redis-py's coroutines
#: must run too (C{realtime.redisio}); the reactor has no public accessor
_assignedBy(AsyncioSelectorReactor.__init__, "_asyncioEventloop")


def asyncioLoopOf(reactor: AsyncioSelectorReactor) -> AbstractEventLoop:
    """
    The asyncio event loop C{reactor} runs.
    """
    loop: AbstractEventLoop = reactor._asyncioEventloop
    return loop


def heldBytes(transport: abstract.FileDescriptor) -> int:
    """
    How many bytes a Twisted transport holds unsent: its buffer past the
    offset, and what C{write} has not yet moved into that buffer.
    """
    held: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return held


def holdsNothing(transport: abstract.FileDescriptor) -> bool:
    """
    Whether a Twisted transport holds nothing unsent (so writing to its
    socket directly keeps the order).
    """
    return transport._tempDataLen == 0 and transport.offset == len(transport.dataBuffer)
