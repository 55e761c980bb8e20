"""
Cross-origin requests to the HTTP API, so a page (the demo page's push
console, an admin tool) can call it from the browser with the API key.

CORS only decides which pages' scripts may *read* the answers.  Every API
request still needs the key, and the key is never a cookie or anything else
a browser sends by itself, so a page that does not know the key gets a 401
whatever its origin.  That is why allowing every origin (the default) is
safe here, as it is for any bearer-token API; ``--api-cors-origin`` narrows
it to listed origins, and ``none`` turns it off.

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered
without the key, because browsers never send credentials on them.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Sequence

from twisted.web.iweb import IRequest

#: how long a browser may cache a preflight answer, in seconds
MAX_AGE = b"600"


class CorsPolicy:
    """
    Which origins may call the API from a browser.

    @ivar origins: C{fnmatch} patterns (C{*} is every origin); empty: none.
    """

    def __init__(self, origins: Sequence[str]) -> None:
        self.origins = tuple(o for o in origins if o and o != "none")

    def allows(self, origin: str) -> bool:
        """
        Whether a page of C{origin} may read the API's answers.
        """
        return any(pattern == "*" or fnmatchcase(origin, pattern) for pattern in self.origins)

    def decorate(self, request: IRequest) -> bool:
        """
        Add the CORS headers a response to C{request} needs.

        @return: C{False} if the request comes from a page whose origin is
            not allowed (it is still answered, but the browser will not
            let the page read the answer).
        """
        origin = request.getHeader(b"origin")
        if not self.origins:
            return origin is None
        request.setHeader(b"Vary", b"Origin")
        if origin is None:
            return True
        if not self.allows(origin.decode("latin-1")):
            return False
        # echo the origin rather than "*": the answer then names exactly who
        # may read it, which is also what a later credentials mode needs
        request.setHeader(b"Access-Control-Allow-Origin", origin)
        request.setHeader(b"Access-Control-Expose-Headers", b"WWW-Authenticate")
        return True

    def handle(self, request: IRequest, method: bytes | None) -> bytes | None:
        """
        Decorate the response to C{request}, and answer it if it is a
        preflight for an endpoint that takes C{method} (C{None}: no such
        endpoint).

        @return: the body of a preflight's answer (its status is set), or
            C{None} for a request the API goes on to serve.
        """
        allowed = self.decorate(request)
        if request.method != b"OPTIONS" or request.getHeader(b"access-control-request-method") is None:
            return None
        request.setHeader(b"Content-Type", b"application/json")
        if not allowed or not self.origins:
            request.setResponseCode(403)
            return b'{"error": {"code": "forbidden", "message": "origin not allowed (--api-cors-origin)"}}'
        if method is None:
            request.setResponseCode(404)
            return b'{"error": {"code": "not_found", "message": "no such endpoint"}}'
        request.setHeader(b"Access-Control-Allow-Methods", method + b", OPTIONS")
        request.setHeader(b"Access-Control-Allow-Headers", b"Authorization, Content-Type")
        request.setHeader(b"Access-Control-Max-Age", MAX_AGE)
        request.setResponseCode(204)
        return b""
