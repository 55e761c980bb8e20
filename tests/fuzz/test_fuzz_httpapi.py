"""
Fuzzing the HTTP API: every body and query on every endpoint gets a
documented status and a JSON body, never a 500.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.store.memory import MemoryMessageStore
from tests.fuzz.support import anyText, fuzz, noTracebacks, objectsWith, values
from tests.support import buildRouter
from tests.test_api_http import Api

#: the statuses the API documents, with the error codes each may carry
DOCUMENTED = {
    200: None,
    400: {"bad_json", "invalid_request"},
    413: {"payload_too_large"},
    415: {"unsupported_media_type"},
}

channels = st.one_of(st.sampled_from(["news", "room:1", "bad channel", ""]), anyText, values)
bodies = objectsWith({"uid": st.one_of(anyText, st.lists(anyText, max_size=3)), "channel": channels, "data": values})
queries = st.lists(
    st.tuples(st.sampled_from([b"channel", b"uid", b"x"]), st.binary(max_size=12)), max_size=4
).map(lambda pairs: b"&".join(quote_from_bytes(k).encode() + b"=" + quote_from_bytes(v).encode() for k, v in pairs))


class HttpApiFuzzTests(SynchronousTestCase):
    """
    One API over a real router (channels with history, memory store).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        rules = NamespaceRules([parseNamespaceSpec("news:*:public=true:history=10:ttl=60")])
        self.api = Api(buildRouter(self.clock, MemoryMessageStore(), rules, offline=None), maxBodySize=1 << 20)

    def check(self, response) -> None:
        """
        The response is documented; its body is JSON.
        """
        self.assertIn(response.status, DOCUMENTED, response.body[:300])
        codes = DOCUMENTED[response.status]
        body = response.json
        if codes is not None:
            self.assertIn(body["error"]["code"], codes)
            self.assertTrue(body["error"]["message"])

    def stillWorks(self) -> None:
        r = self.api.post("/api/publish", {"channel": "news", "data": {"ok": 1}})
        self.assertEqual(r.status, 200, r.body)

    @fuzz
    @given(st.sampled_from(["/api/push", "/api/broadcast", "/api/publish"]), bodies)
    def test_bodies(self, path: str, body: str) -> None:
        """
        Any body POSTed to an endpoint that takes one.
        """
        raw = body.encode("utf-8", "surrogatepass")
        with noTracebacks():
            self.check(self.api.request("POST", path, raw))
            self.stillWorks()
        self.clock.advance(1)

    @fuzz
    @given(st.sampled_from(["/api/presence", "/api/online", "/api/stats"]), queries)
    def test_queries(self, path: str, query: bytes) -> None:
        """
        Any query string on the GET endpoints.
        """
        with noTracebacks():
            self.check(self.api.request("GET", path + "?" + query.decode("ascii")))
            self.stillWorks()

    @fuzz
    @given(st.binary(max_size=80))
    def test_rawBytes(self, raw: bytes) -> None:
        """
        Bytes that are not even text.
        """
        with noTracebacks():
            self.check(self.api.request("POST", "/api/push", raw))
            self.stillWorks()
