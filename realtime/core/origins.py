"""
Which pages may open a WebSocket: C{--allowed-origin}, matched as people
write origins.

Autobahn's matcher compares patterns with C{scheme://host:port}, the port
always spelled out, so C{https://good.example} refused the very origin it
names (browsers send C{Origin: https://good.example}, no port); and it
refused C{Origin: null} (a page opened from a file) unless told otherwise.
Here a pattern is C{scheme://host[:port]}: without a port it means the
scheme's default port (as the browser's origin does), C{*} matches
anything in the part where it stands (C{https://*.example.com},
C{http://localhost:*}), and C{null} names pages opened from files.  No
pattern, or C{*} alone, admits every origin, C{null} included; a list
admits C{null} only if it names it.

The server protocol asks L{OriginPolicy.allows} on both handshake paths
(its fast path and Autobahn's), and refuses with 403.
"""

from __future__ import annotations

import re
from typing import Sequence
from urllib.parse import urlsplit

#: the default port of each scheme an origin can leave it out for
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_Origin = tuple[str, str, int | None]


def parseOrigin(text: str) -> _Origin | str | None:
    """
    The C{(scheme, host, port)} of an C{Origin} header (the port filled in
    for a scheme that has a default), C{"null"} for a page without an
    origin (C{null}, or a C{file:} URL as older browsers send), or C{None}
    if it is not an origin at all.
    """
    text = text.strip().lower()
    if text == "null" or text.startswith("file:"):
        return "null"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS.get(parts.scheme)


def _wildcard(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


class _Pattern:
    """
    One C{scheme://host[:port]} pattern.
    """

    def __init__(self, text: str) -> None:
        scheme, sep, rest = text.strip().lower().partition("://")
        rest = rest[:-1] if rest.endswith("/") else rest
        if not sep or not scheme or not rest or "/" in rest or "?" in rest or "#" in rest:
            raise ValueError(
                f"{text!r} is not an origin: write scheme://host[:port], e.g. https://app.example.com "
                "or https://*.example.com (* is a wildcard, null a page opened from a file)"
            )
        host, port = rest, None
        if ":" in rest and not rest.endswith("]"):
            host, port = rest.rsplit(":", 1)
            if not port or not (port == "*" or port.isdigit()):
                raise ValueError(f"{text!r}: the port must be a number or *")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self._scheme = _wildcard(scheme)
        self._host = _wildcard(host)
        self._port = None if port is None else _wildcard(port)

    def matches(self, origin: _Origin) -> bool:
        scheme, host, port = origin
        if not (self._scheme.fullmatch(scheme) and self._host.fullmatch(host)):
            return False
        if self._port is None:
            return port == DEFAULT_PORTS.get(scheme)
        return bool(self._port.fullmatch("" if port is None else str(port)))


class OriginPolicy:
    """
    The origins C{--allowed-origin} admits.

    @ivar anyOrigin: C{True} when every origin is admitted, C{null} included.
    """

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        """
        @param patterns: as C{--allowed-origin} takes them; none: any origin.
        @raise ValueError: for a pattern that is not an origin, saying how
            to write one.
        """
        patterns = [p.strip() for p in patterns if p.strip()]
        self.anyOrigin = not patterns or "*" in patterns
        self._null = any(p.lower() == "null" for p in patterns)
        self._patterns = [_Pattern(p) for p in patterns if p != "*" and p.lower() != "null"]

    def allows(self, origin: str) -> bool:
        """
        Whether a page of C{origin} (an C{Origin} header's value) may
        connect; a malformed origin never may.
        """
        if self.anyOrigin:
            return True
        found = parseOrigin(origin)
        if found is None:
            return False
        if found == "null":
            return self._null
        assert isinstance(found, tuple)
        return any(pattern.matches(found) for pattern in self._patterns)
