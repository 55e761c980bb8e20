"""
The web side of ``--port``: the demo page at ``/`` with its files
(``realtime.js``, ``demo.js``, ``demo.css``), WebSocket at ``/ws`` for
upgrades that arrive on a reused keep-alive connection (fresh connections are
handed to Autobahn directly by C{realtime.web.sharedport}), and whatever else
C{tap.py} mounts (``/metrics``, ``/healthz``, ``/readyz``, ``/config.json``).
"""

from __future__ import annotations

import importlib.resources
from typing import Any, Mapping

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.static import Data

from realtime.web.http11 import DEFAULT_HEAD_TIMEOUT, Http11Site


def staticBytes(name: str) -> bytes:
    """
    A file shipped in C{realtime/web/static}.
    """
    return importlib.resources.files("realtime.web").joinpath("static", name).read_bytes()


class WebRoot(Resource):
    """
    The root of the web side; unknown paths are plain, escaped 404s.
    """

    def getChild(self, path: bytes, request: object) -> IResource:
        """
        Anything not put here is not found.
        """
        return notFound()


class UpgradeResource(WebSocketResource):
    """
    Autobahn's resource for an upgrade on a reused keep-alive connection,
    which first takes twisted.web's channel off the transport as its
    producer: otherwise the WebSocket protocol cannot register itself
    (C{RuntimeError}) and the upgrade fails with a 500 written nowhere.
    """

    def render(self, request: Any) -> bytes:
        """
        Hand the transport over to a WebSocket protocol.
        """
        transport = request.channel.transport
        if transport is not None:
            transport.unregisterProducer()
        return super().render(request)


#: the files of the page, by name, with their content types
STATIC_FILES = {
    "realtime.js": "application/javascript; charset=utf-8",
    "demo.js": "application/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}


def buildWebSite(
    websocket: WebSocketServerFactory,
    reactor: Any = None,
    extra: Mapping[bytes, IResource] | None = None,
    headTimeout: float = DEFAULT_HEAD_TIMEOUT,
) -> Http11Site:
    """
    The C{Site} that serves the non-WebSocket requests of ``--port``.

    @param extra: more resources to mount at the root, by path segment.
    @param headTimeout: seconds a client has to send each request head.
    """
    root = WebRoot()
    page = Data(staticBytes("index.html"), "text/html; charset=utf-8")
    root.putChild(b"", page)
    for name, contentType in STATIC_FILES.items():
        root.putChild(name.encode("ascii"), Data(staticBytes(name), contentType))
    root.putChild(b"ws", UpgradeResource(websocket))
    for path, resource in (extra or {}).items():
        root.putChild(path, resource)
    site = Http11Site(root, reactor=reactor, headTimeout=headTimeout)
    site.displayTracebacks = False
    site.noisy = False
    return site
