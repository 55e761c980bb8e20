"""
The common opening handshake, read and decided in one step.

Autobahn's general path (C{processHandshake}) is built for every case: a
request it reads is checked, copied into a C{ConnectionRequest}, and handed
to C{onConnect} through C{txaio.as_future} and a Deferred chain, with debug
log arguments formatted on the way, even when C{onConnect} answers at once.
Per connection that is about a third of the Python time a handshake costs
(measured with cProfile and py-spy; see bench/README.rst).

The request every client sends (C{GET} over HTTP/1.1 with a plain path, one
of each header, version 13, a well-formed key) is read here by
L{readUpgrade}, and L{FastHandshake} decides it synchronously when the
authenticator answers synchronously; without an extension offer, it also
writes the 101 response and opens the connection itself (C{_openNow}).
Everything else (a header twice, a version other than 13, a bad key, a
malformed origin, a method other than GET, a fragment or a C{;} in the
target...) returns C{None}, and Autobahn's own path reads the request
again and answers exactly as it always did.  So the fast path never refuses
a request Autobahn would take, and what it accepts it answers with the same
bytes and leaves in the same state (C{tests/test_websocket_handshake.py} compares
both paths).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import parse_qs

import txaio
from autobahn.websocket.protocol import _HTTP_FIELD_NAME, WebSocketProtocol, _is_same_origin, _url_to_origin
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from realtime.values import HandshakeRequest

_KEY = re.compile(r"[A-Za-z0-9+/]{22}==\Z")

#: what Autobahn's C{parseHttpHeader} refuses anywhere in a head: a control
#: character other than HTAB, a CR or LF that is not part of a CRLF
_MALFORMED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")

_log = Logger()

_WS_MAGIC = WebSocketProtocol._WS_MAGIC
_STATE_OPEN = WebSocketProtocol.STATE_OPEN


class Upgrade:
    """
    What L{readUpgrade} found, with Autobahn's names for its values.
    """

    __slots__ = ("data", "statusLine", "headers", "uri", "path", "params", "host", "protocols", "origin", "key")

    def __init__(self, data: bytes, statusLine: str, headers: dict[str, str], uri: str) -> None:
        self.data = data
        self.statusLine = statusLine
        self.headers = headers
        self.uri = uri
        path, _, query = uri.partition("?")
        self.path = path
        self.params: dict[str, list[str]] = parse_qs(query) if query else {}
        self.host = ""
        self.protocols: list[str] = []
        self.origin: str | None = None
        self.key = ""


def _hasToken(value: str, token: str) -> bool:
    """
    Whether the comma-separated header C{value} has C{token}, ignoring case.
    """
    return value.lower() == token or token in [part.strip().lower() for part in value.split(",")]


def readUpgrade(data: bytes, end: int, externalPort: int | None = None) -> Upgrade | None:
    """
    Read the request head C{data[:end]} if it is a common, valid WebSocket
    upgrade (RFC 6455 section 4.2.1), else C{None}.

    Headers are decoded as ISO-8859-1, names lower-cased and values
    stripped of spaces and tabs, as Autobahn's C{parseHttpHeader} does; a
    head it would refuse as malformed (a bare LF, a control character, a
    space before a colon, obs-fold) is declined, so Autobahn refuses it: a
    front proxy may read such a head differently (header smuggling).
    """
    text = data[:end].decode("iso-8859-1")
    if _MALFORMED.search(text):
        return None
    lines = text.split("\r\n")
    if "\t" in lines[0]:
        return None
    statusLine = lines[0].strip(" ")
    request = statusLine.split()
    if len(request) != 3 or request[0] != "GET" or request[2] != "HTTP/1.1":
        return None
    uri = request[1]
    # urlparse would split C{;params} off the path; Autobahn refuses fragments
    if not uri.startswith("/") or uri.startswith("//") or "#" in uri or ";" in uri:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _HTTP_FIELD_NAME.fullmatch(name):
            return None
        headers[name.lower()] = value.strip(" \t")
    if len(headers) != len(lines) - 1:
        # a header twice: Autobahn joins or refuses them
        return None
    host = headers.get("host")
    upgrade = headers.get("upgrade")
    connection = headers.get("connection")
    key = headers.get("sec-websocket-key")
    if (
        not host
        or upgrade is None
        or connection is None
        or key is None
        or headers.get("sec-websocket-version") != "13"
        or not _hasToken(upgrade, "websocket")
        or not _hasToken(connection, "upgrade")
        or not _KEY.match(key)
    ):
        return None
    if ":" in host and not host.endswith("]"):
        host, port = host.rsplit(":", 1)
        try:
            number = int(port.strip())
        except ValueError:
            return None
        if externalPort and number != externalPort:
            return None
    found = Upgrade(data[: end + 4], statusLine, headers, uri)
    found.host = host
    found.key = key
    offered = headers.get("sec-websocket-protocol")
    if offered is not None:
        protocols = [protocol.strip() for protocol in offered.split(",")]
        if len(set(protocols)) != len(protocols):
            return None
        found.protocols = protocols
    found.origin = headers.get("origin")
    return found


class FastHandshake:
    """
    A mixin for the server protocol: L{readUpgrade}'s requests are decided
    without Autobahn's general path; everything else takes it.

    The protocol provides C{decideUpgrade(upgrade)}, which answers as
    C{onConnect} would: the subprotocol chosen (or C{None}), a Deferred of
    it, or a raised C{ConnectionDeny}.
    """

    def processHandshake(self) -> None:
        """
        The fast path when it applies, else Autobahn's.
        """
        upgrade = None
        end = self.data.find(b"\r\n\r\n")  # type: ignore[attr-defined]
        if end >= 0 and not self.maxConnections and not self.trustXForwardedFor and 13 in self.versions:  # type: ignore[attr-defined]
            upgrade = readUpgrade(self.data, end, self.factory.externalPort)  # type: ignore[attr-defined]
        if upgrade is None or (upgrade.origin is not None and not self._originAllowed(upgrade.origin)):
            super().processHandshake()  # type: ignore[misc]
            return
        extensions = upgrade.headers.get("sec-websocket-extensions")
        lean = not extensions and self._leanOpenApplies()
        if lean:
            # only what opening, or Autobahn's succeedHandshake after a
            # Deferred, reads; the rest would be dropped at authentication
            self.websocket_version = 13
            self.websocket_protocols = upgrade.protocols
            self.websocket_extensions = []
        else:
            # what Autobahn's processHandshake leaves on the protocol
            self.http_request_data = upgrade.data
            self.http_status_line = upgrade.statusLine
            self.http_headers = upgrade.headers
            self.http_request_uri = upgrade.uri
            self.http_request_path = upgrade.path
            self.http_request_params = upgrade.params
            self.http_request_host = upgrade.host
            self.websocket_version = 13
            self.websocket_protocols = upgrade.protocols
            self.websocket_origin = upgrade.origin or ""
            self.websocket_extensions = self._parseExtensionsHeader(extensions) if extensions else []  # type: ignore[attr-defined]
        self._wskey = upgrade.key
        self.data = self.data[len(upgrade.data) :]
        try:
            decision = self.decideUpgrade(upgrade)  # type: ignore[attr-defined]
        except Exception:
            self._handshakeError(Failure())
            return
        if isinstance(decision, Deferred):
            decision.addCallbacks(self.succeedHandshake, self._handshakeError)  # type: ignore[attr-defined]
        elif lean:
            self._openNow(decision)
        else:
            self.succeedHandshake(decision)  # type: ignore[attr-defined]

    def _leanOpenApplies(self) -> bool:
        """
        Whether L{_openNow} does all Autobahn's C{succeedHandshake} would:
        no extra response headers, automatic pings or timing.
        """
        return not self.factory.headers and not self.autoPingInterval and not self.trackTimings  # type: ignore[attr-defined]

    def _openNow(self, protocol: str | None) -> None:
        """
        Autobahn's C{succeedHandshake} for a request that offered no
        extension, on a factory without extra headers, pings or timing:
        the same response and the same state, without its general loops.
        """
        if protocol is not None and protocol not in self.websocket_protocols:
            raise Exception("protocol accepted must be from the list client sent or None")
        accept = base64.b64encode(hashlib.sha1(self._wskey.encode("utf8") + _WS_MAGIC).digest()).decode()
        server = self.factory.server  # type: ignore[attr-defined]
        response = "HTTP/1.1 101 Switching Protocols\r\n"
        if server:
            response += f"Server: {server}\r\n"
        response += "Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
        if protocol is not None:
            response += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        response += f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        self.sendData(response.encode("utf8"))  # type: ignore[attr-defined]
        self.websocket_protocol_in_use = protocol
        self.websocket_extensions_in_use: list[Any] = []
        self.state = _STATE_OPEN
        if self.openHandshakeTimeoutCall is not None:  # type: ignore[has-type]
            self.openHandshakeTimeoutCall.cancel()
            self.openHandshakeTimeoutCall = None
        self.inside_message = False
        self.current_frame = None
        self._onOpen()  # type: ignore[attr-defined]
        txaio.resolve(self.is_open, None)  # type: ignore[attr-defined]
        if self.data:
            self.consumeData()  # type: ignore[attr-defined]

    def _originAllowed(self, origin: str) -> bool:
        """
        Autobahn's origin check, with Autobahn's own helpers.  The factory
        leaves Autobahn admitting every origin, so this refuses only a
        malformed one (Autobahn answers it 400); which pages may connect
        is the protocol's C{decideHandshake} (C{realtime.core.origins}, 403),
        the same on both paths.
        """
        try:
            found = _url_to_origin(origin)
        except ValueError:
            return False
        factory = self.factory  # type: ignore[attr-defined]
        if found == "null":
            return bool(factory.allowNullOrigin)
        return _is_same_origin(
            found,
            "https" if factory.isSecure else "http",
            factory.externalPort or factory.port,
            self.allowedOriginsPatterns,  # type: ignore[attr-defined]
        )

    def _handshakeError(self, failure: Failure) -> None:
        """
        As Autobahn answers an C{onConnect} that raised: a C{ConnectionDeny}
        with its code, anything else with 500.
        """
        if isinstance(failure.value, ConnectionDeny):
            self.failHandshake(failure.value.reason, failure.value.code)  # type: ignore[attr-defined]
            return
        _log.failure("deciding a WebSocket handshake failed", failure)
        self.failHandshake(f"Internal server error: {failure.value}", ConnectionDeny.INTERNAL_SERVER_ERROR)  # type: ignore[attr-defined]


def upgradeRequest(upgrade: Upgrade, peer: str, peerHost: str) -> HandshakeRequest:
    """
    The value authenticators see, from a request L{readUpgrade} read.
    """
    return HandshakeRequest(
        path=upgrade.path,
        params=upgrade.params,
        headers=upgrade.headers,
        protocols=tuple(upgrade.protocols),
        origin=upgrade.origin or "",
        peer=peer,
        peerHost=peerHost,
    )


