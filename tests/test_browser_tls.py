"""
A real headless Chromium over TLS: it loads a page from the web port over
``https://`` and opens ``wss://`` to a self-signed certificate made in the
test (``--ignore-certificate-errors``, as for any test certificate),
authenticates with its uid as the first packet, and receives what the
backend pushes through the HTTP API (over https too) and the line port.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any, Iterator

import pytest

from tests.browser import WAIT_MS, launchBrowser
from tests.serverprocess import API_KEY, ServerProcess, linePush, tlsServer, waitUntil

#: the page's socket, its messages and its close code, kept on C{window}
OPEN_SOCKET = """
url => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    window.received = [];
    ws.onopen = () => { ws.send("tls-visitor"); resolve(true); };
    ws.onmessage = event => window.received.push(event.data);
    ws.onerror = () => reject(new Error("WebSocket error opening " + url));
    ws.onclose = event => { window.closedWith = event.code; };
})
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """
    One Chromium for the module, accepting the self-signed certificate.
    """
    yield from launchBrowser(["--ignore-certificate-errors"])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServerProcess, str]]:
    """
    A server with TLS on its web and API ports, and its certificate.
    """
    found = tlsServer()
    yield found
    found[0].stop()


def apiCall(server: ServerProcess, certPath: str, method: str, path: str, body: object = None) -> Any:
    """
    One HTTP API call over https, trusting the test's certificate.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = f"https://127.0.0.1:{server.ports['api-port']}{path}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=certPath)
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def test_wssReceivesPushes(browser: Any, server: tuple[ServerProcess, str]) -> None:
    """
    The page, served over https, opens C{wss://}, sends its uid, and gets
    the pushes of both backend ports, in order.
    """
    process, certPath = server
    port = process.ports["port"]
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        page.goto(f"https://127.0.0.1:{port}/")
        assert page.evaluate("location.protocol") == "https:"
        assert page.evaluate(OPEN_SOCKET, f"wss://127.0.0.1:{port}/") is True
        uid = "tls-visitor"
        waitUntil(lambda: apiCall(process, certPath, "GET", f"/api/online?uid={uid}")["online"][uid] == 1)
        answer = apiCall(process, certPath, "POST", "/api/push", {"uid": uid, "data": "over https"})
        assert answer["delivered"] == 1, answer
        assert linePush(process.ports["push-port"], b'{"uid":"tls-visitor","n":2}\n') == [b"ok"]
        page.wait_for_function("() => window.received.length >= 2")
        assert page.evaluate("window.received") == ["over https", '{"uid":"tls-visitor","n":2}']
        assert page.evaluate("window.closedWith === undefined")
    finally:
        context.close()
