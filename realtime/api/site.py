"""
The HTTP API's site and requests, which set its limits: a body over the
limit is discarded as it arrives, never held in memory or spooled to disk;
every request head has a deadline and an oversized one is answered 431
(L{realtime.web.http11}).

(The limits on what a client may take - connections, messages per second -
are L{realtime.core.limits}.)
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, cast

from twisted.web import server
from twisted.web.resource import IResource

from realtime.web.http11 import DEFAULT_HEAD_TIMEOUT, Http11Site, headTooLarge

DEFAULT_MAX_BODY_SIZE = 1024 * 1024


class ApiRequest(server.Request):
    """
    A request that keeps at most C{site.maxBodySize} bytes of its body.

    Twisted's own request spools a large body to a temporary file (blocking
    disk writes on the reactor thread) and keeps all of it; this one keeps a
    body in memory up to the limit and drops the rest as it arrives, so the
    resource can answer 413 having held nothing.

    @ivar bodyTooLarge: C{True} once the body is known to exceed the limit.
    """

    bodyTooLarge = False
    maxBodySize = DEFAULT_MAX_BODY_SIZE
    _bodyLength = 0

    def gotLength(self, length: int | None) -> None:
        """
        Take the site's limit, and refuse a declared length over it before
        any of the body arrives.
        """
        self.maxBodySize = getattr(getattr(self.channel, "site", None), "maxBodySize", DEFAULT_MAX_BODY_SIZE)
        self.content = BytesIO()
        if length is not None and length > self.maxBodySize:
            self.bodyTooLarge = True

    def handleContentChunk(self, data: bytes) -> None:
        """
        Keep C{data} while the body is within the limit; once it is not,
        drop what was kept and everything after it.
        """
        if self.bodyTooLarge:
            return
        self._bodyLength += len(data)
        if self._bodyLength > self.maxBodySize:
            self.bodyTooLarge = True
            self.content = BytesIO()
            return
        cast(BytesIO, self.content).write(data)


class ApiSite(Http11Site):
    """
    The site serving the API: L{ApiRequest}s, no form parsing, and the
    API's JSON error for an oversized head.

    @ivar maxBodySize: the largest request body accepted, in bytes.
    @ivar api: the C{ApiResource} served (set by C{buildApiSite}).
    """

    api: Any = None

    headTooLarge = headTooLarge(
        b'{"error": {"code": "headers_too_large", "message": "request head over 16 KiB or 500 header lines"}}',
        b"application/json",
    )

    def __init__(
        self,
        resource: IResource,
        maxBodySize: int = DEFAULT_MAX_BODY_SIZE,
        headTimeout: float = DEFAULT_HEAD_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            resource, requestFactory=ApiRequest, parsePOSTFormSubmission=False, headTimeout=headTimeout, **kwargs
        )
        self.maxBodySize = maxBodySize
