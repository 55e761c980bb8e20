"""
The common opening handshake, decided in one step, on Autobahn's state.

Autobahn's general path (C{processHandshake}) is built for every case: a
request it reads is checked, copied into a C{ConnectionRequest}, and handed
to C{onConnect} through C{txaio.as_future} and a Deferred chain, with debug
log arguments formatted on the way, even when C{onConnect} answers at once.
Per connection that is about a third of the Python time a handshake costs
(measured with cProfile and py-spy; see bench/README.rst).

The request every client sends is read by
L{realtime.websocket.handshake.readUpgrade}; L{openFast} decides it
synchronously when the authenticator answers synchronously and, without an
extension offer, also writes the 101 response and opens the connection
itself (L{openNow}).  Everything else returns C{False}, and Autobahn's own
path reads the request again and answers exactly as it always did.  So the
fast path never refuses a request Autobahn would take, and what it accepts
it answers with the same bytes and leaves in the same state
(C{tests/test_websocket_handshake.py} compares both paths).

These are functions of the connection (a
L{realtime.websocket._autobahn.connection.ServerConnection}) rather than
methods: they run once per connection, and the class stays one readable
list of what it overrides.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import txaio
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from realtime.websocket._autobahn import privates
from realtime.websocket.handshake import readUpgrade

_log = Logger()

_STATE_OPEN = WebSocketProtocol.STATE_OPEN


def openFast(connection: Any) -> bool:
    """
    Decide the request C{connection.data} holds on the fast path, if it is
    one L{readUpgrade} reads and its origin is well-formed; C{False}
    (nothing done) if Autobahn's path must take it.
    """
    upgrade = None
    end = connection.data.find(b"\r\n\r\n")
    if end >= 0 and not connection.maxConnections and not connection.trustXForwardedFor and 13 in connection.versions:
        upgrade = readUpgrade(connection.data, end, connection.factory.externalPort)
    if upgrade is None or (upgrade.origin is not None and not originAllowed(connection, upgrade.origin)):
        return False
    extensions = upgrade.headers.get("sec-websocket-extensions")
    lean = not extensions and leanOpenApplies(connection)
    if lean:
        # only what opening, or Autobahn's succeedHandshake after a
        # Deferred, reads; the rest would be dropped at authentication
        connection.websocket_version = 13
        connection.websocket_protocols = upgrade.protocols
        connection.websocket_extensions = []
    else:
        # what Autobahn's processHandshake leaves on the protocol
        connection.http_request_data = upgrade.data
        connection.http_status_line = upgrade.statusLine
        connection.http_headers = upgrade.headers
        connection.http_request_uri = upgrade.uri
        connection.http_request_path = upgrade.path
        connection.http_request_params = upgrade.params
        connection.http_request_host = upgrade.host
        connection.websocket_version = 13
        connection.websocket_protocols = upgrade.protocols
        connection.websocket_origin = upgrade.origin or ""
        connection.websocket_extensions = (
            privates.parseExtensionsHeader(connection, extensions) if extensions else []
        )
    connection._wskey = upgrade.key
    connection.data = connection.data[len(upgrade.data) :]
    try:
        decision = connection.decideUpgrade(upgrade)
    except Exception:
        handshakeError(connection, Failure())
        return True
    if isinstance(decision, Deferred):
        decision.addCallbacks(connection.succeedHandshake, lambda failure: handshakeError(connection, failure))
    elif lean:
        openNow(connection, decision)
    else:
        connection.succeedHandshake(decision)
    return True


def leanOpenApplies(connection: Any) -> bool:
    """
    Whether L{openNow} does all Autobahn's C{succeedHandshake} would: no
    extra response headers, automatic pings or timing.
    """
    return not connection.factory.headers and not connection.autoPingInterval and not connection.trackTimings


def openNow(connection: Any, protocol: str | None) -> None:
    """
    Autobahn's C{succeedHandshake} for a request that offered no extension,
    on a factory without extra headers, pings or timing: the same response
    and the same state, without its general loops.
    """
    if protocol is not None and protocol not in connection.websocket_protocols:
        raise Exception("protocol accepted must be from the list client sent or None")
    accept = base64.b64encode(hashlib.sha1(connection._wskey.encode("utf8") + privates.WS_MAGIC).digest()).decode()
    server = connection.factory.server
    response = "HTTP/1.1 101 Switching Protocols\r\n"
    if server:
        response += f"Server: {server}\r\n"
    response += "Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
    if protocol is not None:
        response += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    response += f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    connection.sendData(response.encode("utf8"))
    connection.websocket_protocol_in_use = protocol
    connection.websocket_extensions_in_use = []
    connection.state = _STATE_OPEN
    if connection.openHandshakeTimeoutCall is not None:
        connection.openHandshakeTimeoutCall.cancel()
        connection.openHandshakeTimeoutCall = None
    connection.inside_message = False
    connection.current_frame = None
    privates.onOpen(connection)
    txaio.resolve(connection.is_open, None)  # type: ignore[attr-defined]
    if connection.data:
        connection.consumeData()


def originAllowed(connection: Any, origin: str) -> bool:
    """
    Autobahn's origin check, with Autobahn's own helpers.  The factory
    leaves Autobahn admitting every origin, so this refuses only a
    malformed one (Autobahn answers it 400); which pages may connect is the
    protocol's C{decideHandshake} (C{realtime.core.origins}, 403), the same
    on both paths.
    """
    try:
        found = privates.urlToOrigin(origin)
    except ValueError:
        return False
    factory = connection.factory
    if found == "null":
        return bool(factory.allowNullOrigin)
    return privates.isSameOrigin(
        found,
        "https" if factory.isSecure else "http",
        factory.externalPort or factory.port,
        connection.allowedOriginsPatterns,
    )


def handshakeError(connection: Any, failure: Failure) -> None:
    """
    As Autobahn answers an C{onConnect} that raised: a C{ConnectionDeny}
    with its code, anything else with 500.
    """
    if isinstance(failure.value, ConnectionDeny):
        connection.failHandshake(failure.value.reason, failure.value.code)
        return
    _log.failure("deciding a WebSocket handshake failed", failure)
    connection.failHandshake(f"Internal server error: {failure.value}", ConnectionDeny.INTERNAL_SERVER_ERROR)
