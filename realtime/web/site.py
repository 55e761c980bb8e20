"""
The web side of ``--port``: the demo page at ``/`` with its files
(``realtime.js``, ``demo.js``, ``demo.css``), WebSocket at ``/ws`` for
upgrades that arrive on a reused keep-alive connection (fresh connections are
handed to Autobahn directly by C{realtime.web.front}), and whatever else
C{tap.py} mounts (``/metrics``, ``/healthz``, ``/readyz``, ``/config.json``).
"""

from __future__ import annotations

import importlib.resources
from typing import Any, Mapping

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import Data


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


#: the files of the page, by name, with their content types
STATIC_FILES = {
    "realtime.js": "application/javascript; charset=utf-8",
    "demo.js": "application/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}


def buildWebSite(
    websocket: WebSocketServerFactory, reactor: Any = None, extra: Mapping[bytes, IResource] | None = None
) -> Site:
    """
    The C{Site} that serves the non-WebSocket requests of ``--port``.

    @param extra: more resources to mount at the root, by path segment.
    """
    root = WebRoot()
    page = Data(staticBytes("index.html"), "text/html; charset=utf-8")
    root.putChild(b"", page)
    for name, contentType in STATIC_FILES.items():
        root.putChild(name.encode("ascii"), Data(staticBytes(name), contentType))
    root.putChild(b"ws", WebSocketResource(websocket))
    for path, resource in (extra or {}).items():
        root.putChild(path, resource)
    site = Site(root, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    return site
