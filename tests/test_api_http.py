"""
Tests for L{realtime.api.http}: real HTTP/1.1 bytes through an L{ApiSite}'s
channel on an in-memory transport, against the real L{MemoryBroker}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from realtime.api.answers import messagePayload
from realtime.api.http import ApiResource, buildApiResource, buildApiSite
from realtime.api.site import ApiRequest, ApiSite
from realtime.broker.memory import MemoryBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.interfaces import IBroker
from realtime.values import PushResult, ToAll, ToUids
from tests.fakes import FakeSession, ManualBroker

KEY = "s3cret-api-key"
PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class Response:
    """
    A parsed HTTP response.
    """

    def __init__(self, raw: bytes) -> None:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete response in {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = rest[: int(self.headers["content-length"])]

    @property
    def json(self) -> Any:
        """
        The body, decoded.
        """
        return json.loads(self.body)

    @property
    def error(self) -> tuple[int, str]:
        """
        The status and the error code of an error response.
        """
        return self.status, self.json["error"]["code"]


def rawRequest(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str | None] | None = None,
    key: str | None = KEY,
) -> bytes:
    """
    The bytes of one HTTP/1.1 request; a header given as C{None} is left out.
    """
    allHeaders: dict[str, str | None] = {"Host": "127.0.0.1:8081"}
    if key is not None:
        allHeaders["Authorization"] = f"Bearer {key}"
    if body is not None:
        allHeaders["Content-Type"] = "application/json"
        allHeaders["Content-Length"] = str(len(body))
    allHeaders.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in allHeaders.items() if v is not None)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


class Api:
    """
    An L{ApiSite} for C{broker}, and a way to talk HTTP to it in memory.

    @ivar made: every L{ApiRequest} the site created, to look inside.
    """

    def __init__(
        self, broker: IBroker, maxBodySize: int = 1024, maxUids: int | None = None, backups: Any = None
    ) -> None:
        self.clock = Clock()
        self.root = buildApiResource(broker, KEY, maxBodySize, self.clock, maxUids=maxUids, backups=backups)
        api = self.root.getStaticEntity(b"api")
        assert isinstance(api, ApiResource)
        self.resource = api
        self.site = ApiSite(self.root, maxBodySize, reactor=self.clock)
        self.made: list[ApiRequest] = []

        def makeRequest(*args: Any, **kwargs: Any) -> ApiRequest:
            request = ApiRequest(*args, **kwargs)
            self.made.append(request)
            return request

        self.site.requestFactory = makeRequest

    def connect(self, site: Site | None = None) -> tuple[Any, StringTransport]:
        """
        An HTTP channel of the site on an in-memory transport.
        """
        channel = (site or self.site).buildProtocol(PEER)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def request(self, *args: Any, site: Site | None = None, **kwargs: Any) -> Response:
        """
        Send one request (see L{rawRequest}) and parse the response.
        """
        channel, transport = self.connect(site)
        channel.dataReceived(rawRequest(*args, **kwargs))
        response = Response(transport.value())
        channel.connectionLost(Failure(ConnectionDone()))
        return response

    def post(self, path: str, body: Any, **kwargs: Any) -> Response:
        """
        POST C{body} as JSON.
        """
        return self.request("POST", path, json.dumps(body).encode(), **kwargs)


class MemoryApiTestCase(SynchronousTestCase):
    """
    The API over a real L{MemoryBroker} whose sessions are L{FakeSession}s.
    """

    def setUp(self) -> None:
        self.registry = SessionRegistry()
        self.broker = MemoryBroker(self.registry, Fanout(Clock()))
        self.api = Api(self.broker)

    def session(self, uid: str) -> FakeSession:
        """
        A connected session of C{uid}.
        """
        s = FakeSession(uid)
        self.registry.add(s)
        return s


class AuthTests(MemoryApiTestCase):
    """
    Every request needs the bearer key.
    """

    def test_missing(self) -> None:
        """
        No Authorization header: 401 with a Bearer challenge.
        """
        r = self.api.request("GET", "/api/stats", key=None)
        self.assertEqual(r.error, (401, "unauthorized"))
        self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="realtime"')
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertIn("Bearer <key>", r.json["error"]["message"])

    def test_wrongKey(self) -> None:
        """
        A wrong key: 401 naming an invalid token, and nothing is pushed.
        """
        s = self.session("u1")
        r = self.api.post("/api/push", {"uid": "u1", "data": "x"}, key="guess")
        self.assertEqual(r.error, (401, "unauthorized"))
        self.assertEqual(r.json["error"]["message"], "wrong API key")
        self.assertIn('error="invalid_token"', r.headers["www-authenticate"])
        self.assertEqual(s.sent, [])

    def test_otherScheme(self) -> None:
        """
        Basic credentials, or a Bearer without a token, are malformed.
        """
        for value in ("Basic " + KEY, "Bearer", "Bearer   ", KEY):
            r = self.api.request("GET", "/api/stats", key=None, headers={"Authorization": value})
            self.assertEqual(r.error, (401, "unauthorized"), value)
            self.assertIn("malformed", r.json["error"]["message"])

    def test_schemeCaseInsensitive(self) -> None:
        """
        The scheme is case-insensitive, as RFC 7235 says.
        """
        r = self.api.request("GET", "/api/stats", key=None, headers={"Authorization": "bearer " + KEY})
        self.assertEqual(r.status, 200)

    def test_beforeRouting(self) -> None:
        """
        An unauthenticated caller gets 401 even for a path that does not
        exist, so it cannot probe which do.
        """
        self.assertEqual(self.api.request("GET", "/api/nope", key=None).status, 401)
        self.assertEqual(self.api.request("GET", "/elsewhere", key=None).status, 401)

    def test_emptyKeyRefused(self) -> None:
        """
        An empty API key would let anyone in, so it is refused at startup.
        """
        self.assertRaises(ValueError, buildApiResource, self.broker, "", 1024, Clock())


class RoutingTests(MemoryApiTestCase):
    """
    Unknown paths are 404, wrong methods 405, both as JSON.
    """

    def test_notFound(self) -> None:
        """
        Paths outside the four endpoints are 404 with a JSON body.
        """
        for path in ("/", "/api", "/api/", "/api/nope", "/nope", "/api/push/extra", "/api/stats/", "/push"):
            r = self.api.request("GET", path)
            self.assertEqual(r.error, (404, "not_found"), path)

    def test_methodNotAllowed(self) -> None:
        """
        The wrong method is 405 with an Allow header.
        """
        for method, path, allowed in [
            ("GET", "/api/push", "POST"),
            ("PUT", "/api/broadcast", "POST"),
            ("POST", "/api/stats", "GET"),
            ("DELETE", "/api/online?uid=a", "GET"),
        ]:
            r = self.api.request(method, path)
            self.assertEqual(r.error, (405, "method_not_allowed"), path)
            self.assertEqual(r.headers["allow"], allowed)


class BodyTests(MemoryApiTestCase):
    """
    Bodies that are not a usable JSON object are refused with where and why.
    """

    def test_badJson(self) -> None:
        """
        Invalid JSON is 400 bad_json, and the message says where.
        """
        r = self.api.request("POST", "/api/push", b'{"uid": "u1",}')
        self.assertEqual(r.error, (400, "bad_json"))
        self.assertEqual(
            r.json["error"]["message"],
            "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 14",
        )

    def test_notJsonAtAll(self) -> None:
        """
        Empty bodies, non-UTF-8 bodies, and NaN are bad JSON too.
        """
        for body, words in [
            (b"", "empty body"),
            (b"  \n", "empty body"),
            (b'{"data": "\xff"}', "not UTF-8"),
            (b'{"uid": "u", "data": NaN}', "NaN is not valid JSON"),
            (b'{"channel": "news", "data": -Infinity}', "-Infinity is not valid JSON"),
            (b"[" * 1000, "invalid JSON"),
        ]:
            r = self.api.request("POST", "/api/push", body)
            self.assertEqual(r.error, (400, "bad_json"), body)
            self.assertIn(words, r.json["error"]["message"])

    def test_notAnObject(self) -> None:
        """
        A JSON value other than an object is 400 invalid_request.
        """
        for body in ([], "u1", 3, None):
            r = self.api.post("/api/push", body)
            self.assertEqual(r.error, (400, "invalid_request"))
            self.assertEqual(r.json["error"]["message"], "expected a JSON object")

    def test_fields(self) -> None:
        """
        A missing or ill-typed C{uid}, or a missing C{data}, is 400 naming
        the field; nothing is pushed.
        """
        s = self.session("u1")
        uidType = '"uid" must be a non-empty string or a list of them'
        for body, message in [
            ({"data": "x"}, 'missing "uid"'),
            ({"uid": "u1"}, 'missing "data"'),
            ({"uid": "", "data": "x"}, uidType),
            ({"uid": [], "data": "x"}, uidType),
            ({"uid": ["u1", None], "data": "x"}, uidType),
            ({"uid": 1.5, "data": "x"}, uidType),
            ({"uid": {"u1": 1}, "data": "x"}, uidType),
        ]:
            r = self.api.post("/api/push", body)
            self.assertEqual(r.error, (400, "invalid_request"), body)
            self.assertEqual(r.json["error"]["message"], message)
        self.assertEqual(self.api.post("/api/broadcast", {"news": 1}).json["error"]["message"], 'missing "data"')
        r = self.api.post("/api/broadcast", {"uid": "u1", "data": 1})
        self.assertEqual(r.error, (400, "invalid_request"))
        self.assertEqual(s.sent, [])

    def test_loneSurrogate(self) -> None:
        """
        Data that cannot be encoded as UTF-8 is refused, not a 500.
        """
        r = self.api.request("POST", "/api/push", b'{"uid": "u1", "data": "\\ud800"}')
        self.assertEqual(r.error, (400, "invalid_request"))

    def test_unsendableData(self) -> None:
        """
        On every endpoint that takes C{data}, a lone surrogate anywhere in it
        is 400 invalid_request naming the problem, never a 500, and nothing
        is pushed or published; a number out of range (C{1e999}) is already
        refused as bad JSON.
        """
        s = self.session("u1")
        for path, head in [
            ("/api/push", b'{"uid": "u1", '),
            ("/api/broadcast", b"{"),
            ("/api/publish", b'{"channel": "news", '),
        ]:
            for data, words in [
                (b'"\\ud800"', "not valid Unicode"),
                (b'["ok", {"\\udfff": 1}]', "not valid Unicode"),
            ]:
                r = self.api.request("POST", path, head + b'"data": ' + data + b"}")
                self.assertEqual(r.error, (400, "invalid_request"), (path, data))
                self.assertIn('"data" ', r.json["error"]["message"])
                self.assertIn(words, r.json["error"]["message"])
            r = self.api.request("POST", path, head + b'"data": [1e999]}')
            self.assertEqual(r.error, (400, "bad_json"), path)
            self.assertIn("1e999 is too large", r.json["error"]["message"])
        self.assertEqual(s.sent, [])

    def test_contentType(self) -> None:
        """
        A multipart body is 415; anything else is parsed as JSON, including
        what C{curl -d} labels as a form.
        """
        body = json.dumps({"uid": "u1", "data": "x"}).encode()
        r = self.api.request("POST", "/api/push", body, headers={"Content-Type": "multipart/form-data; boundary=x"})
        self.assertEqual(r.error, (415, "unsupported_media_type"))
        r = self.api.request("POST", "/api/push", b"uid=u1&data=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.error, (400, "bad_json"))
        for contentType in (
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.x+json",
            "application/x-www-form-urlencoded",
            "text/plain",
            None,
        ):
            r = self.api.request("POST", "/api/push", body, headers={"Content-Type": contentType})
            self.assertEqual(r.status, 200, contentType)


class BodySizeTests(MemoryApiTestCase):
    """
    A body over the limit is answered 413 without being kept.
    """

    def test_declaredTooLarge(self) -> None:
        """
        A 10 MB body declared by Content-Length is dropped as it arrives (the
        request holds none of it, not even in a temporary file) and answered
        413.
        """
        channel, transport = self.api.connect()
        size = 10 * 1024 * 1024
        channel.dataReceived(rawRequest("POST", "/api/push", headers={"Content-Length": str(size)}))
        chunk = b"x" * 65536
        for i in range(size // len(chunk)):
            channel.dataReceived(chunk)
            if i == 80:
                [request] = self.api.made
                self.assertTrue(request.bodyTooLarge)
                self.assertEqual(request.content.getvalue(), b"")
                self.assertEqual(transport.value(), b"")
        r = Response(transport.value())
        self.assertEqual(r.error, (413, "payload_too_large"))
        self.assertEqual(r.json["error"]["message"], "request body longer than 1024 bytes")
        channel.connectionLost(Failure(ConnectionDone()))

    def test_chunkedTooLarge(self) -> None:
        """
        A chunked body with no declared length is kept only up to the limit,
        then dropped.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("POST", "/api/push", headers={"Transfer-Encoding": "chunked"}))
        for _ in range(200):
            channel.dataReceived(b"200\r\n" + b"y" * 0x200 + b"\r\n")
            [request] = self.api.made
            self.assertLessEqual(len(request.content.getvalue()), 1024)
        self.assertTrue(request.bodyTooLarge)
        channel.dataReceived(b"0\r\n\r\n")
        self.assertEqual(Response(transport.value()).error, (413, "payload_too_large"))
        channel.connectionLost(Failure(ConnectionDone()))

    def test_atLimit(self) -> None:
        """
        A body of exactly the limit is accepted.
        """
        s = self.session("u1")
        prefix = b'{"uid": "u1", "data": "'
        body = prefix + b"z" * (1024 - len(prefix) - 2) + b'"}'
        self.assertEqual(len(body), 1024)
        r = self.api.request("POST", "/api/push", body)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(s.sent[0][0]), 1024 - len(prefix) - 2)
        self.assertEqual(self.api.request("POST", "/api/push", body + b" ").error, (413, "payload_too_large"))

    def test_plainSite(self) -> None:
        """
        Served by a plain C{Site} (which buffers), the resource still refuses
        a body over the limit.
        """
        plain = Site(self.api.root, reactor=self.api.clock)
        body = json.dumps({"uid": "u1", "data": "w" * 2000}).encode()
        self.assertEqual(self.api.request("POST", "/api/push", body, site=plain).error, (413, "payload_too_large"))


class PushTests(MemoryApiTestCase):
    """
    C{POST /api/push} and C{POST /api/broadcast}.
    """

    def test_delivered(self) -> None:
        """
        A push counts the connections it reached, per uid.
        """
        a1, a2, b = self.session("a"), self.session("a"), self.session("b")
        r = self.api.post("/api/push", {"uid": ["a", "b", "c"], "data": "hi"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json, {"status": "delivered", "delivered": 3, "uids": {"a": 2, "b": 1, "c": 0}})
        self.assertEqual((a1.texts, a2.texts, b.texts), (["hi"], ["hi"], ["hi"]))
        self.assertEqual(self.api.resource.pushes, 1)

    def test_tooManyUids(self) -> None:
        """
        A push naming more uids than the limit is refused with 413
        C{too_many_uids}, and nobody gets it; exactly the limit is fine.
        """
        api = Api(self.broker, maxUids=3)
        a = self.session("a")
        r = api.post("/api/push", {"uid": ["a", "b", "c", "d"], "data": "hi"})
        self.assertEqual(r.error, (413, "too_many_uids"))
        self.assertIn("at most 3", r.json["error"]["message"])
        self.assertEqual(a.texts, [])
        r = api.post("/api/push", {"uid": ["a", "b", "c"], "data": "hi"})
        self.assertEqual((r.status, r.json["delivered"], a.texts), (200, 1, ["hi"]))

    def test_offline(self) -> None:
        """
        A push nobody received says C{offline}.
        """
        r = self.api.post("/api/push", {"uid": "ghost", "data": {"x": 1}})
        self.assertEqual(r.json, {"status": "offline", "delivered": 0, "uids": {"ghost": 0}})

    def test_integerUid(self) -> None:
        """
        An integer uid addresses the sessions of its decimal text.
        """
        s = self.session("42")
        r = self.api.post("/api/push", {"uid": 42, "data": "x"})
        self.assertEqual(r.json, {"status": "delivered", "delivered": 1, "uids": {"42": 1}})
        self.assertEqual(s.texts, ["x"])

    def test_dataShapes(self) -> None:
        """
        A string arrives as exactly that text (even when it looks like JSON);
        any other value as its compact JSON, non-ASCII kept as is.
        """
        s = self.session("u1")
        for data in ["plain text", '{"already": "json"}', {"b": [1, 2], "a": "caf\u00e9"}, 42, None, True, []]:
            self.assertEqual(self.api.post("/api/push", {"uid": "u1", "data": data}).status, 200)
        self.assertEqual(
            s.texts,
            ["plain text", '{"already": "json"}', '{"b":[1,2],"a":"caf\u00e9"}', "42", "null", "true", "[]"],
        )
        self.assertEqual([binary for _, binary in s.sent], [False] * 7)

    def test_messagePayload(self) -> None:
        """
        L{messagePayload} is UTF-8.
        """
        self.assertEqual(messagePayload("\u00e9"), b"\xc3\xa9")
        self.assertEqual(messagePayload({"k": "\u00e9"}), b'{"k":"\xc3\xa9"}')

    def test_broadcast(self) -> None:
        """
        A broadcast reaches every session and answers its count, no uids.
        """
        a, b = self.session("a"), self.session("b")
        r = self.api.post("/api/broadcast", {"data": {"news": 1}})
        self.assertEqual(r.json, {"status": "delivered", "delivered": 2})
        self.assertEqual((a.texts, b.texts), (['{"news":1}'], ['{"news":1}']))

    def test_broadcastToNobody(self) -> None:
        """
        A broadcast with nobody connected says C{offline}.
        """
        self.assertEqual(self.api.post("/api/broadcast", {"data": 1}).json, {"status": "offline", "delivered": 0})


class QueryTests(MemoryApiTestCase):
    """
    C{GET /api/online} and C{GET /api/stats}.
    """

    def test_online(self) -> None:
        """
        Each uid maps to its connection count, 0 when offline; repeats are
        asked once; uids are URL-decoded.
        """
        self.session("u1")
        self.session("u1")
        self.session("a b")
        r = self.api.request("GET", "/api/online?uid=u1&uid=u2&uid=u1&uid=a%20b")
        self.assertEqual(r.json, {"online": {"u1": 2, "u2": 0, "a b": 1}})

    def test_onlineOne(self) -> None:
        """
        One uid has the same shape as many.
        """
        self.assertEqual(self.api.request("GET", "/api/online?uid=u1").json, {"online": {"u1": 0}})

    def test_onlineWithoutUid(self) -> None:
        """
        No uid, or an empty one, is 400.
        """
        for path in ("/api/online", "/api/online?uid=", "/api/online?user=u1", "/api/online?uid=%ff"):
            self.assertEqual(self.api.request("GET", path).error, (400, "invalid_request"), path)

    def test_stats(self) -> None:
        """
        The broker's counters, plus the seconds since the API was built.
        """
        self.session("a")
        self.session("a")
        self.session("b")
        self.api.clock.advance(12.5)
        r = self.api.request("GET", "/api/stats")
        self.assertEqual(r.json, {"connections": 3, "uids": 2, "channels": 0, "pendingDeliveries": 0, "uptime": 12.5})


class DeferredTests(SynchronousTestCase):
    """
    Answers that come later, that fail, or whose client has gone.
    """

    def setUp(self) -> None:
        self.broker = ManualBroker()
        self.api = Api(self.broker)

    def test_later(self) -> None:
        """
        The response is written when the broker answers.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("POST", "/api/push", json.dumps({"uid": "u", "data": 1}).encode()))
        [(envelope, d)] = self.broker.published
        self.assertEqual((envelope.target, envelope.payload, envelope.isBinary), (ToUids(("u",)), b"1", False))
        self.assertEqual(transport.value(), b"")
        d.callback(PushResult(1, {"u": 1}))
        self.assertEqual(Response(transport.value()).json["delivered"], 1)
        channel.connectionLost(Failure(ConnectionDone()))

    def test_broadcastEnvelope(self) -> None:
        """
        A broadcast is published to everyone.
        """
        self.api.connect()[0].dataReceived(rawRequest("POST", "/api/broadcast", b'{"data": "x"}'))
        [(envelope, _)] = self.broker.published
        self.assertEqual((envelope.target, envelope.payload), (ToAll(), b"x"))

    def test_clientGone(self) -> None:
        """
        If the client disconnects first, the push still completes and nothing
        is written to the closed request.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("POST", "/api/push", b'{"uid": "u", "data": 1}'))
        channel.connectionLost(Failure(ConnectionLost()))
        self.broker.published[0][1].callback(PushResult(1, {"u": 1}))
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_clientGoneThenFailure(self) -> None:
        """
        A broker failure after the client left is still logged, and not
        written.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("POST", "/api/push", b'{"uid": "u", "data": 1}'))
        channel.connectionLost(Failure(ConnectionLost()))
        self.broker.published[0][1].errback(RuntimeError("broker down"))
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_internalError(self) -> None:
        """
        A broker failure is logged and answered 500 internal_error, without
        the traceback.
        """
        channel, transport = self.api.connect()
        channel.dataReceived(rawRequest("POST", "/api/push", b'{"uid": "u", "data": 1}'))
        self.broker.published[0][1].errback(RuntimeError("broker down"))
        r = Response(transport.value())
        self.assertEqual(r.error, (500, "internal_error"))
        self.assertNotIn(b"broker down", r.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.api.resource.errors, 1)
        channel.connectionLost(Failure(ConnectionDone()))

    def test_buildApiSite(self) -> None:
        """
        L{buildApiSite} serves the API with the same body limit.
        """
        site = buildApiSite(self.broker, KEY, 4096, Clock())
        self.assertIsInstance(site, ApiSite)
        self.assertEqual(site.maxBodySize, 4096)
        self.assertIsInstance(site.resource.getStaticEntity(b"api"), ApiResource)
