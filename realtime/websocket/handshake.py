"""
The common opening handshake, read in one step.

Autobahn's general path (C{processHandshake}) reads every request the same
slow way (see C{realtime.websocket._autobahn.opening}, which decides the
requests read here on Autobahn's state).  The request every client sends
(C{GET} over HTTP/1.1 with a plain path, one of each header, version 13, a
well-formed key) is read here by L{readUpgrade}.  Everything else (a header
twice, a version other than 13, a bad key, a method other than GET, a
fragment or a C{;} in the target...) is declined with C{None}, and Autobahn's
own path reads the request again and answers exactly as it always did
(C{tests/test_websocket_handshake.py} compares both paths).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from realtime.values import HandshakeRequest
from realtime.websocket._autobahn.privates import HTTP_FIELD_NAME

_KEY = re.compile(r"[A-Za-z0-9+/]{22}==\Z")

#: what Autobahn's C{parseHttpHeader} refuses anywhere in a head: a control
#: character other than HTAB, a CR or LF that is not part of a CRLF
_MALFORMED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")


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
        if not colon or not HTTP_FIELD_NAME.fullmatch(name):
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


