"""
Tests for L{realtime.api.cors}: the HTTP API across origins, in real HTTP
bytes through an L{ApiSite}, the key still required.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from realtime.api.cors import CorsPolicy
from realtime.api.http import buildApiSite
from realtime.broker.memory import MemoryBroker
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from tests.test_api_http import KEY, PEER, Response, rawRequest

PAGE = "http://127.0.0.1:8080"
PREFLIGHT = {"Origin": PAGE, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


def request(origins: list[str], *args: Any, **kwargs: Any) -> Response:
    """
    One request to an API allowing C{origins}.
    """
    clock = Clock()
    broker = MemoryBroker(SessionRegistry(), Fanout(clock))
    site = buildApiSite(broker, KEY, 1024, clock, CorsPolicy(origins))
    channel = site.buildProtocol(PEER)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(rawRequest(*args, **kwargs))
    response = Response(transport.value())
    channel.connectionLost(Failure(ConnectionDone()))
    return response


class PreflightTests(SynchronousTestCase):
    """
    Preflights are answered without the key, for allowed origins only.
    """

    def test_allowed(self) -> None:
        """
        An allowed origin gets 204 with the method, the headers and a max
        age, and the origin echoed.
        """
        response = request(["*"], "OPTIONS", "/api/push", key=None, headers=PREFLIGHT)
        self.assertEqual(response.status, 204)
        self.assertEqual(response.headers["access-control-allow-origin"], PAGE)
        self.assertEqual(response.headers["access-control-allow-methods"], "POST, OPTIONS")
        self.assertEqual(response.headers["access-control-allow-headers"], "Authorization, Content-Type")
        self.assertEqual(response.headers["access-control-max-age"], "600")
        self.assertEqual(response.headers["vary"], "Origin")
        self.assertNotIn("access-control-allow-credentials", response.headers)

    def test_pattern(self) -> None:
        """
        Listed origins may be patterns; others are refused with 403.
        """
        self.assertEqual(request(["http://127.0.0.1:*"], "OPTIONS", "/api/push", key=None, headers=PREFLIGHT).status, 204)
        refused = request(["https://admin.example"], "OPTIONS", "/api/push", key=None, headers=PREFLIGHT)
        self.assertEqual(refused.error, (403, "forbidden"))
        self.assertNotIn("access-control-allow-origin", refused.headers)

    def test_off(self) -> None:
        """
        With CORS off (C{none}) every preflight is refused.
        """
        response = request(["none"], "OPTIONS", "/api/push", key=None, headers=PREFLIGHT)
        self.assertEqual(response.error, (403, "forbidden"))

    def test_unknownEndpoint(self) -> None:
        """
        A preflight for a path that does not exist is a 404.
        """
        self.assertEqual(request(["*"], "OPTIONS", "/api/nope", key=None, headers=PREFLIGHT).error, (404, "not_found"))

    def test_getEndpoint(self) -> None:
        """
        A GET endpoint's preflight allows GET.
        """
        response = request(["*"], "OPTIONS", "/api/stats", key=None, headers=PREFLIGHT)
        self.assertEqual(response.headers["access-control-allow-methods"], "GET, OPTIONS")


class CrossOriginRequestTests(SynchronousTestCase):
    """
    The requests themselves still need the key; allowed pages may read the
    answer either way.
    """

    def test_keyStillRequired(self) -> None:
        """
        Without the key: 401, readable by the page so it can say why.
        """
        response = request(["*"], "POST", "/api/push", b'{"uid": "u", "data": 1}', key=None, headers={"Origin": PAGE})
        self.assertEqual(response.error, (401, "unauthorized"))
        self.assertEqual(response.headers["access-control-allow-origin"], PAGE)

    def test_withKey(self) -> None:
        """
        With the key: served, with the origin allowed to read it.
        """
        response = request(["*"], "POST", "/api/push", b'{"uid": "u", "data": 1}', headers={"Origin": PAGE})
        self.assertEqual((response.status, response.json["status"]), (200, "offline"))
        self.assertEqual(response.headers["access-control-allow-origin"], PAGE)

    def test_disallowedOriginServedUnreadable(self) -> None:
        """
        A request from a page whose origin is not allowed is served as
        before (a backend may send any Origin), without CORS headers.
        """
        response = request(["https://admin.example"], "GET", "/api/stats", headers={"Origin": PAGE})
        self.assertEqual(response.status, 200)
        self.assertNotIn("access-control-allow-origin", response.headers)

    def test_noOrigin(self) -> None:
        """
        A backend's request (no Origin) is unchanged.
        """
        response = request(["*"], "GET", "/api/stats")
        self.assertEqual(response.status, 200)
        self.assertNotIn("access-control-allow-origin", response.headers)


class PolicyTests(SynchronousTestCase):
    """
    L{CorsPolicy.allows}.
    """

    def test_allows(self) -> None:
        """
        C{*} is everyone, patterns match, C{none} and empty are no one.
        """
        self.assertTrue(CorsPolicy(["*"]).allows("https://x"))
        self.assertTrue(CorsPolicy(["https://*.example"]).allows("https://a.example"))
        self.assertFalse(CorsPolicy(["https://*.example"]).allows("https://a.example.evil"))
        self.assertFalse(CorsPolicy(["none"]).allows("https://x"))
        self.assertEqual(CorsPolicy(["none"]).origins, ())
