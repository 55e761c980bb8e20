"""
The HTTP push API: JSON in, JSON out, for backends.

Every request carries ``Authorization: Bearer <key>``.  The endpoints::

    POST /api/push       {"uid": "u1" | ["u1", "u2"], "data": <any JSON>}
        -> 200 {"status": "delivered" | "queued" | "offline", "delivered": 3, "uids": {"u1": 2, "u2": 1},
                "queued": ["u3"], "refused": ["u4"]}
    POST /api/broadcast  {"data": <any JSON>}
        -> 200 {"status": "delivered" | "offline", "delivered": 120}
    POST /api/publish    {"channel": "news", "data": <any JSON>}
        -> 200 {"status": "published", "channel": "news", "offset": 42, "epoch": "9f3a", "delivered": 7}
    GET  /api/presence?channel=chat:lobby
        -> 200 {"channel": "chat:lobby", "uids": {"alice": 1}, "connections": 1}
    GET  /api/online?uid=u1[&uid=u2...]
        -> 200 {"online": {"u1": 2, "u2": 0}}
    GET  /api/stats
        -> 200 {"connections": 120, "uids": 80, ..., "uptime": 3600.5}
    GET  /api/backup
        -> 200 the SQLite database, consistent, as application/vnd.sqlite3 (realtime/api/backup.py)
    GET  /api/openapi.json  (no key)
        -> 200 this API as an OpenAPI 3.1 document (realtime/api/openapi.py)

``/api/online`` has one shape for one uid or many: each uid mapped to its
connection count (0 when offline).  ``"delivered"`` counts connections, not
uids; ``"offline"`` means none.  A string ``data`` reaches the browser as
exactly that text; any other JSON value as its compact JSON (``{"a":1}``).
A uid may be an integer (taken as its decimal text), as PHP often sends it.

Errors are ``{"error": {"code": ..., "message": ...}}``::

    400 bad_json                body empty, not UTF-8, or not JSON (the message says where; NaN,
                                Infinity and nesting too deep are not JSON)
    400 invalid_request         not an object; "uid" or "data" missing or of the wrong type, or
                                "data" that cannot be sent (a lone surrogate, a float out of range)
    401 unauthorized            Authorization missing, malformed, or the wrong key
    404 not_found               no such endpoint
    405 method_not_allowed      with an Allow header
    409 no_database             /api/backup with --store memory: there is no file to copy
    409 backup_in_progress      /api/backup while another one is made or downloaded
    413 payload_too_large       body over the configured limit
    413 too_many_uids           "uid" lists more uids than --max-uids-per-push (default 10000)
    431 headers_too_large       request head over 16 KiB or 500 header lines (the connection closes)
    415 unsupported_media_type  a multipart body (a file upload form is never JSON)
    429 rate_limited            a push (any POST) over --api-rate; Retry-After says when to try again
    503 store_unavailable       the message store failed (the message says why; logged once, /readyz is 503)
    503 broker_unavailable      the broker cannot reach Redis (the message says why; /readyz is 503);
                                nothing was pushed
    503 shutting_down           the server is stopping; the 503s carry Retry-After
    500 internal_error          logged with its traceback

Serve it with L{ApiSite} (or L{buildApiSite}): its requests discard a body
beyond the limit as it arrives, so an oversized upload is never held in
memory or spooled to disk.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable, cast

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from realtime.api.answers import ApiError, invalid, isMultipart, jsonData, messagePayload, pushAnswer
from realtime.api.backup import BackupDownloads, BackupInProgress
from realtime.api.cors import CorsPolicy
from realtime.api.openapi import OpenApiResource
from realtime.api.site import ApiSite
from realtime.api.targets import LineError, TooManyUids, targetUids
from realtime.broker import BrokerUnavailable
from realtime.core.jsoncodec import JSONError, decode
from realtime.core.limits import RateLimit, TokenBucket, retryAfter
from realtime.core.namespaces import validChannel
from realtime.interfaces import IBackupSource, IPublisher
from realtime.store.health import ShuttingDown, StoreUnavailable
from realtime.values import Envelope, ToAll, ToChannel, ToUids
from realtime.web.http11 import DEFAULT_HEAD_TIMEOUT

__all__ = [
    "ApiCounters",
    "ApiError",
    "ApiResource",
    "buildApiResource",
    "buildApiSite",
    "jsonData",
    "messagePayload",
    "pushAnswer",
]

#: seconds a backend is told to wait when the store fails or the server stops
RETRY_AFTER = b"5"

_Answer = tuple[int, dict[str, Any]]
#: an action answers None when it writes its answer itself (a download)
_Action = Callable[[IRequest], "Deferred[_Answer] | Deferred[None] | _Answer"]


class _Endpoint(Resource):
    """
    One path under the API; C{method} C{None} is the not-found endpoint.
    """

    isLeaf = True

    def __init__(self, api: ApiResource, method: bytes | None = None, action: _Action | None = None) -> None:
        super().__init__()
        self._api = api
        self._method = method
        self._action = action

    def render(self, request: IRequest) -> bytes | int:
        if request.postpath:
            return self._api.serve(request, None, None)
        return self._api.serve(request, self._method, self._action)


class _Branch(Resource):
    """
    A resource whose own path and unknown children answer a JSON 404.
    """

    _notFound: _Endpoint

    def getChild(self, path: bytes, request: IRequest) -> Resource:
        return self._notFound

    def render(self, request: IRequest) -> bytes | int:
        return self._notFound.render(request)


class _Root(_Branch):
    """
    The site root: C{/api}, and a JSON 404 for anything else.
    """

    def __init__(self, api: ApiResource) -> None:
        super().__init__()
        self.putChild(b"api", api)
        self._notFound = _Endpoint(api)


class ApiCounters:
    """
    The HTTP API's own counts.

    @ivar requests: requests served.
    @ivar pushes: pushes, broadcasts and publishes.
    @ivar errors: requests answered with an error status.
    """

    __slots__ = ("requests", "pushes", "errors")

    def __init__(self) -> None:
        self.requests = self.pushes = self.errors = 0


#: what made the server refuse a request for a while, and the error code
#: the backend is told (each a 503 with Retry-After)
_UNAVAILABLE: dict[type[Exception], str] = {
    ShuttingDown: "shutting_down",
    StoreUnavailable: "store_unavailable",
    BrokerUnavailable: "broker_unavailable",
}

class ApiResource(_Branch):
    """
    C{/api}: authenticates every request, then runs its endpoint.
    """

    log = Logger()

    def __init__(
        self,
        publisher: IPublisher,
        apiKey: str,
        maxBodySize: int,
        reactor: IReactorTime,
        cors: Any = None,
        maxUids: int | None = None,
        rate: RateLimit | None = None,
        backups: IBackupSource | None = None,
        counts: ApiCounters | None = None,
    ) -> None:
        super().__init__()
        self.maxUids = maxUids
        self.backups = None if backups is None else BackupDownloads(backups, reactor)
        #: the key's pushes per second (one key, one bucket)
        self.rate = TokenBucket(rate, reactor) if rate is not None else None
        self.cors = cors or CorsPolicy(())
        if not apiKey:
            raise ValueError("the API key must not be empty")
        self.publisher = publisher
        self.maxBodySize = maxBodySize
        self._apiKey = apiKey.encode("utf-8")
        self._reactor = reactor
        self._started = reactor.seconds()
        #: requests, pushes and errors, kept apart so the server's counters
        #: (which /api/stats reports) can be built before this resource
        self.counts = counts if counts is not None else ApiCounters()
        self._notFound = _Endpoint(self)
        self.putChild(b"push", _Endpoint(self, b"POST", self._push))
        self.putChild(b"broadcast", _Endpoint(self, b"POST", self._broadcast))
        self.putChild(b"publish", _Endpoint(self, b"POST", self._publish))
        self.putChild(b"presence", _Endpoint(self, b"GET", self._presence))
        self.putChild(b"online", _Endpoint(self, b"GET", self._online))
        self.putChild(b"stats", _Endpoint(self, b"GET", self._stats))
        self.putChild(b"backup", _Endpoint(self, b"GET", self._backup))
        self.putChild(b"openapi.json", OpenApiResource(self.cors, maxBodySize))

    @property
    def requests(self) -> int:
        """
        Requests served.
        """
        return self.counts.requests

    @property
    def pushes(self) -> int:
        """
        Pushes, broadcasts and publishes.
        """
        return self.counts.pushes

    @property
    def errors(self) -> int:
        """
        Requests answered with an error status.
        """
        return self.counts.errors

    # -- the request cycle ---------------------------------------------------

    def serve(self, request: IRequest, method: bytes | None, action: _Action | None) -> bytes | int:
        """
        Authenticate first (so a stranger learns nothing about which paths
        exist), then route and run C{action}: JSON whatever happens, and
        nothing written after the client has gone.
        """
        self.counts.requests += 1
        request.setHeader(b"Cache-Control", b"no-store")
        preflight = self.cors.handle(request, method)
        if preflight is not None:
            return preflight
        try:
            self._authenticate(request)
            if method is None or action is None:
                raise ApiError(404, "not_found", f"no such endpoint: {request.path.decode('latin-1')}")
            if request.method != method:
                raise ApiError(
                    405, "method_not_allowed", f"use {method.decode()} for this endpoint", {b"Allow": method}
                )
            wait = self.rate.take() if self.rate is not None and method == b"POST" else 0.0
            if wait:
                raise ApiError(429, "rate_limited", "over --api-rate; retry later", {b"Retry-After": retryAfter(wait)})
        except ApiError as e:
            return self._encode(request, *self._errorAnswer(request, e))
        gone: list[bool] = [False]
        cast(server.Request, request).notifyFinish().addBoth(lambda _: gone.__setitem__(0, True))
        # the actions answer a value, or a Deferred of one (or of None)
        d: Deferred[_Answer | None] = maybeDeferred(cast(Callable[[IRequest], Any], action), request)
        d.addErrback(self._ebAnswer, request)
        d.addCallback(self._cbFinish, request, gone)
        d.addErrback(lambda f: self.log.failure("could not answer an API request", f))
        return server.NOT_DONE_YET

    def _ebAnswer(self, failure: Failure, request: IRequest) -> _Answer:
        if failure.check(ApiError):
            return self._errorAnswer(request, cast(ApiError, failure.value))
        unavailable = failure.check(*_UNAVAILABLE)
        if unavailable is not None:
            error = ApiError(503, _UNAVAILABLE[unavailable], str(failure.value), {b"Retry-After": RETRY_AFTER})
            return self._errorAnswer(request, error)
        method, path = request.method.decode("latin-1"), request.path.decode("latin-1")
        self.log.failure("API request {method} {path} failed", failure, method=method, path=path)
        return self._errorAnswer(request, ApiError(500, "internal_error", "internal error; see the server log"))

    def _cbFinish(self, answer: _Answer | None, request: IRequest, gone: list[bool]) -> None:
        if answer is not None and not gone[0]:
            request.write(self._encode(request, *answer))
            request.finish()

    def _errorAnswer(self, request: IRequest, error: ApiError) -> _Answer:
        self.counts.errors += 1
        for name, value in error.headers.items():
            request.setHeader(name, value)
        return error.status, {"error": {"code": error.code, "message": error.message}}

    @staticmethod
    def _encode(request: IRequest, status: int, body: dict[str, Any]) -> bytes:
        # the spaced form the README and the examples show; bodies are the server's own
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(data))
        return data

    def _authenticate(self, request: IRequest) -> None:
        header = request.getHeader(b"authorization")
        scheme, _, token = (header or b"").strip().partition(b" ")
        token = token.strip()
        if header is None:
            problem, challenge = "missing Authorization header; expected: Bearer <key>", b""
        elif scheme.lower() != b"bearer" or not token:
            problem, challenge = "malformed Authorization header; expected: Bearer <key>", b""
        elif not hmac.compare_digest(token, self._apiKey):
            problem, challenge = "wrong API key", b', error="invalid_token"'
        else:
            return
        raise ApiError(401, "unauthorized", problem, {b"WWW-Authenticate": b'Bearer realm="realtime"' + challenge})

    def _jsonBody(self, request: IRequest) -> dict[str, Any]:
        contentType = request.getHeader(b"content-type")
        # The body is parsed as JSON whatever the Content-Type says: `curl -d`
        # labels JSON as a form, and refusing that would only be pedantic.
        # A multipart body is a form upload, never JSON.
        if contentType and isMultipart(contentType):
            wanted = f"expected a JSON body, not {contentType.decode('latin-1')}"
            raise ApiError(415, "unsupported_media_type", wanted)
        tooLarge = ApiError(413, "payload_too_large", f"request body longer than {self.maxBodySize} bytes")
        if getattr(request, "bodyTooLarge", False):
            raise tooLarge
        raw = request.content.read(self.maxBodySize + 1)
        if len(raw) > self.maxBodySize:
            raise tooLarge
        if not raw.strip():
            raise ApiError(400, "bad_json", "empty body; expected a JSON object")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, "bad_json", f"body is not UTF-8 (byte {e.start})") from None
        try:
            body = decode(text)
        except JSONError as e:
            raise ApiError(400, "bad_json", f"invalid JSON: {e}") from None
        if not isinstance(body, dict):
            raise invalid("expected a JSON object")
        return body

    @staticmethod
    def _data(body: dict[str, Any]) -> bytes:
        if "data" not in body:
            raise invalid('missing "data"')
        return messagePayload(body["data"])

    # -- endpoints -----------------------------------------------------------

    def _push(self, request: IRequest) -> Deferred[_Answer] | _Answer:
        body = self._jsonBody(request)
        if "uid" not in body:
            raise invalid('missing "uid"')
        try:
            uids = targetUids(body["uid"], self.maxUids)
        except TooManyUids as e:
            raise ApiError(413, "too_many_uids", str(e)) from None
        except LineError as e:
            raise invalid(str(e)) from None
        return self._pushed(Envelope(ToUids(uids), self._data(body), False))

    def _broadcast(self, request: IRequest) -> Deferred[_Answer] | _Answer:
        body = self._jsonBody(request)
        if "uid" in body:
            raise invalid('a broadcast goes to everyone: drop "uid", or use /api/push')
        return self._pushed(Envelope(ToAll(), self._data(body), False))

    def _publish(self, request: IRequest) -> Deferred[_Answer] | _Answer:
        body = self._jsonBody(request)
        channel = body.get("channel")
        if not validChannel(channel):
            raise invalid('"channel" must be a channel name (letters, digits and _-:.@/=+~#$%&!, up to 200)')
        if "data" not in body:
            raise invalid('missing "data"')
        return self._pushed(Envelope(ToChannel(cast(str, channel)), jsonData(body["data"]), False))

    def _pushed(self, envelope: Envelope) -> Deferred[_Answer] | _Answer:
        """
        Publish C{envelope} and word the answer, at once if the router
        answered at once.
        """
        self.counts.pushes += 1
        result = self.publisher.publish(envelope)
        target = envelope.target
        if isinstance(result, Deferred):
            return result.addCallback(lambda r: (200, pushAnswer(target, r)))
        return 200, pushAnswer(target, result)

    def _presence(self, request: IRequest) -> Deferred[_Answer]:
        raw = request.args.get(b"channel") or [b""]
        channel = raw[0].decode("utf-8", "replace")
        if not validChannel(channel):
            raise invalid('give the channel as a "channel" query parameter: /api/presence?channel=chat:lobby')
        return self.publisher.presence(channel).addCallback(lambda presence: (200, presence))

    def _online(self, request: IRequest) -> Deferred[_Answer]:
        raw = request.args.get(b"uid") or []
        try:
            uids = tuple(dict.fromkeys(value.decode("utf-8") for value in raw))
        except UnicodeDecodeError:
            raise invalid('"uid" is not UTF-8') from None
        if not uids or not all(uids):
            raise invalid('give each uid as a non-empty "uid" query parameter: /api/online?uid=u1&uid=u2')
        d = gatherResults([self.publisher.connectionCount(uid) for uid in uids], consumeErrors=True)
        return d.addCallback(lambda counts: (200, {"online": dict(zip(uids, counts, strict=True))}))

    def _stats(self, request: IRequest) -> Deferred[_Answer]:
        uptime = round(self._reactor.seconds() - self._started, 3)
        return self.publisher.stats().addCallback(lambda stats: (200, {**stats, "uptime": uptime}))

    def _backup(self, request: IRequest) -> Deferred[None]:
        if self.backups is None:
            raise ApiError(409, "no_database", "this server keeps its messages in memory (--store memory): no file to back up")
        try:
            return self.backups.send(request)
        except BackupInProgress as e:
            raise ApiError(409, "backup_in_progress", str(e)) from None


def buildApiResource(
    publisher: IPublisher,
    apiKey: str,
    maxBodySize: int,
    reactor: IReactorTime,
    cors: CorsPolicy | None = None,
    maxUids: int | None = None,
    rate: RateLimit | None = None,
    backups: IBackupSource | None = None,
    counts: ApiCounters | None = None,
) -> IResource:
    """
    The API's root resource, with everything under C{/api}.

    @param apiKey: the bearer key every request must carry; must not be empty.
    @param maxBodySize: the largest request body accepted, in bytes (the
        L{ApiSite} serving this should have the same limit).
    @param reactor: the clock for C{uptime}.
    @param cors: which pages may call it from a browser (default: none).
    @param maxUids: the most uids one push may name (default: any).
    @param rate: pushes per second the key may make (default: no limit).
    @param backups: what C{/api/backup} copies (default: nothing, 409).
    @param counts: where the API counts its requests (default: its own).
    """
    return _Root(ApiResource(publisher, apiKey, maxBodySize, reactor, cors, maxUids, rate, backups, counts))


def buildApiSite(
    publisher: IPublisher,
    apiKey: str,
    maxBodySize: int,
    reactor: IReactorTime,
    cors: CorsPolicy | None = None,
    headTimeout: float = DEFAULT_HEAD_TIMEOUT,
    maxUids: int | None = None,
    rate: RateLimit | None = None,
    backups: IBackupSource | None = None,
    counts: ApiCounters | None = None,
) -> ApiSite:
    """
    The API resource served by an L{ApiSite} with the same body limit, ready
    to give to an endpoint's C{listen}.

    @param headTimeout: seconds a client has to send each request head.
    """
    return ApiSite(
        buildApiResource(publisher, apiKey, maxBodySize, reactor, cors, maxUids, rate, backups, counts),
        maxBodySize,
        headTimeout,
        reactor=reactor,
    )
