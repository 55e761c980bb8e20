"""
The web side of ``--port``: the page at ``/`` and WebSocket at ``/ws`` for
upgrades that arrive on a reused keep-alive connection (fresh connections are
handed to Autobahn directly by C{realtime.web.front}).
"""

from __future__ import annotations

import importlib.resources
from typing import Any

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


def buildWebSite(websocket: WebSocketServerFactory, reactor: Any = None) -> Site:
    """
    The C{Site} that serves the non-WebSocket requests of ``--port``.
    """
    root = WebRoot()
    page = Data(staticBytes("index.html"), "text/html; charset=utf-8")
    root.putChild(b"", page)
    root.putChild(b"realtime.js", Data(staticBytes("realtime.js"), "application/javascript; charset=utf-8"))
    root.putChild(b"ws", WebSocketResource(websocket))
    site = Site(root, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    return site
