"""
The operator's endpoints on the web side of ``--port``:

``/metrics``
    Prometheus text format, built from the live counters at each scrape.
``/healthz``
    Liveness: 200 while the reactor answers requests at all.
``/readyz``
    Readiness: 200 when the broker has no problem (C{IBroker.problem}: a
    networked broker cut off from its server says so) and answers, and the
    store completes a read within C{timeout} seconds; 503 (with what failed)
    otherwise, while the store is failing (until a write succeeds again) and while shutting down,
    so a load balancer stops sending clients here first.
``/config.json``
    What the demo page needs to know to explain itself: the routing and
    auth plugins, the rules of its chat channel, where the HTTP API is.
"""

from __future__ import annotations

import json
from typing import Any, Callable, cast

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request

from realtime.api.cors import CorsPolicy
from realtime.interfaces import IBroker


class BrokerDown(Exception):
    """
    The broker says it cannot deliver (L{IBroker.problem}); the message is
    its reason, which /readyz shows.
    """


#: the store key /readyz reads: never a real uid (uids have no control characters)
READY_PROBE_UID = "\x00readyz"


def jsonBody(request: IRequest, status: int, body: object) -> bytes:
    """
    Answer C{request} with C{body} as JSON, never cached.
    """
    data = json.dumps(body).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


class MetricsResource(Resource):
    """
    ``/metrics`` in the Prometheus text format (version 0.0.4, which every
    scraper reads).
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        """
        Collect and encode.
        """
        request.setHeader(b"Content-Type", CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return generate_latest(self.registry)


class HealthResource(Resource):
    """
    ``/healthz``: the process is alive and its reactor serves requests.
    """

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        """
        Always fine, if it answers at all.
        """
        return jsonBody(request, 200, {"status": "ok"})


class ReadyResource(Resource):
    """
    ``/readyz``: the broker and the store answer, in time.

    Concurrent probes share one check, so a flood of requests costs the
    store one read at a time.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        broker: IBroker,
        store: Any,
        stopping: Callable[[], bool],
        timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._broker = broker
        self._store = store
        self._stopping = stopping
        self.timeout = timeout
        self._waiting: list[Deferred[dict[str, str]]] | None = None

    def _probe(self, name: str, check: Callable[[], Any]) -> Deferred[str]:
        d: Deferred[Any] = maybeDeferred(check)
        d.addTimeout(self.timeout, self._reactor)

        def failed(failure: Failure) -> str:
            self.log.warn("readiness check {name} failed: {why}", name=name, why=failure.getErrorMessage() or failure.type)
            return f"failed: {failure.getErrorMessage() or getattr(failure.type, '__name__', 'error')}"

        return d.addCallbacks(lambda _: "ok", failed)

    def _storeWorks(self) -> Deferred[Any]:
        """
        A read, while the store works; a write while it is failing (a
        C{problem}, from L{realtime.store.health.MonitoredStore}): a full
        disk still serves reads, and only a write shows it has room again.
        """
        now = self._reactor.seconds()
        if getattr(self._store, "problem", None) is not None:
            return self._store.markSeen({READY_PROBE_UID: now})
        return self._store.wasSeen(READY_PROBE_UID, now)

    def check(self) -> Deferred[dict[str, str]]:
        """
        Run (or join) one readiness check.

        @return: each check's name and C{"ok"} or why it failed.
        """
        done: Deferred[dict[str, str]] = Deferred()
        if self._waiting is not None:
            self._waiting.append(done)
            return done
        self._waiting = [done]

        def brokerUp() -> Any:
            problem = self._broker.problem
            if problem is not None:
                raise BrokerDown(problem)
            return self._broker.stats()

        probes = [
            self._probe("broker", brokerUp),
            self._probe("store", self._storeWorks),
        ]

        def finished(results: list[str]) -> None:
            waiting, self._waiting = self._waiting or [], None
            answer = {"broker": results[0], "store": results[1]}
            for d in waiting:
                d.callback(answer)

        gatherResults(probes).addCallback(finished)
        return done

    def render_GET(self, request: IRequest) -> int | bytes:
        """
        503 while stopping; otherwise check, and answer 200 or 503.
        """
        if self._stopping():
            return jsonBody(request, 503, {"ready": False, "checks": {"server": "stopping"}})
        gone: list[bool] = []
        cast(Request, request).notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(checks: dict[str, str]) -> None:
            if gone:
                return
            ready = all(result == "ok" for result in checks.values()) and not self._stopping()
            request.write(jsonBody(request, 200 if ready else 503, {"ready": ready, "checks": checks}))
            request.finish()

        self.check().addCallback(answer).addErrback(lambda f: self.log.failure("answering /readyz failed", f))
        return server.NOT_DONE_YET


class PageConfigResource(Resource):
    """
    ``/config.json``: what the demo page adapts to.  It holds no secret:
    plugin names, the chat channel's rules and the API's port.
    """

    isLeaf = True

    def __init__(self, describe: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._describe = describe

    def render_GET(self, request: IRequest) -> bytes:
        """
        The description, as JSON.
        """
        return jsonBody(request, 200, self._describe())


def pageDescription(options: Any, ports: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """
    What C{/config.json} tells the demo page: the plugins, the rules of its
    chat channel, and the HTTP API's port (the page still needs the key).
    """
    chat = options["namespace-rules"].match("chat:lobby")

    def describe() -> dict[str, Any]:
        port = getattr(ports.get("api-port"), "getHost", lambda: None)()
        return {
            "routing": options["routing-name"],
            "auth": options["auth-name"],
            "chat": {
                "channel": "chat:lobby",
                "public": chat.public,
                "publish": chat.publish,
                "presence": chat.presence,
                "history": chat.history,
            },
            "api": {"port": getattr(port, "port", None), "cors": bool(CorsPolicy(options["api-cors-origin"]).origins)},
        }

    return describe
