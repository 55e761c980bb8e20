"""
Driving the demo page in a real headless Chromium (Debian's
C{/usr/bin/chromium}, through Playwright): the browser and the page helpers
the browser tests share.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Sequence

import pytest

from tests.serverprocess import ROOT

CHROMIUM = os.environ.get("REALTIME_CHROMIUM", "/usr/bin/chromium")
#: as this machine's Chromium must run: no sandbox as root, and no
#: background traffic to hosts the closed network refuses
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: a server with the page's chat room
CHAT_ARGS = (
    "--routing",
    "channels",
    "--namespace",
    "chat:*:public=true:publish=true:presence=true:history=100:ttl=3600",
)
WAIT_MS = 10_000


def artifactsDirectory() -> str:
    """
    Where screenshots go: C{$REALTIME_TEST_ARTIFACTS}, else C{test-artifacts/}
    in the checkout (ignored by git).
    """
    path = os.environ.get("REALTIME_TEST_ARTIFACTS") or os.path.join(ROOT, "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


def launchBrowser(extraArgs: Sequence[str] = ()) -> Iterator[Any]:
    """
    One Chromium for a whole test module, with C{extraArgs} after
    L{CHROMIUM_ARGS}; skipped (or, with C{REALTIME_REQUIRE_BROWSER} set,
    failed) when it cannot run here.

    Playwright starts it with a fresh temporary profile of its own, which is
    the fresh C{--user-data-dir} this machine's Chromium needs.
    """
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install '.[test]')"
    if problem is None and not os.path.exists(CHROMIUM):
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if problem is not None:
        if os.environ.get("REALTIME_REQUIRE_BROWSER"):
            pytest.fail(f"REALTIME_REQUIRE_BROWSER is set but {problem}")
        pytest.skip(problem)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extraArgs], headless=True)
        try:
            yield browser
        finally:
            browser.close()


class DemoPage:
    """
    One visitor of the demo page, in a browser context of its own (so
    storage and network emulation are not shared with other visitors).
    """

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 860})
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-mode]")

    @property
    def mode(self) -> str:
        """
        What the page made of the server: C{channels}, C{relay} or C{listen}.
        """
        return str(self.page.get_attribute("body", "data-mode"))

    def join(self, name: str) -> DemoPage:
        """
        Join under C{name} and wait until connected.
        """
        self.page.fill("#name", name)
        self.page.click("#join-button")
        self.page.wait_for_selector("#status[data-state=open]")
        return self

    def say(self, text: str) -> None:
        """
        Type C{text} into the chat and press Enter.
        """
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")

    def waitForLine(self, text: str, kind: str = "") -> str:
        """
        Wait until a line of the message list (of class C{kind}) holds
        C{text}; its whole text.
        """
        locator = self.page.locator(f"#messages li{'.' + kind if kind else ''}", has_text=text)
        locator.first.wait_for()
        return str(locator.first.inner_text())

    def lines(self) -> list[str]:
        """
        The message list, one string per line, without the times.
        """
        return [str(t) for t in self.page.eval_on_selector_all(
            "#messages li", "items => items.map(li => Array.from(li.childNodes).slice(1)"
            ".map(n => n.textContent).join(' '))"
        )]  # fmt: skip

    def waitForOnline(self, *names: str) -> None:
        """
        Wait until the online list is exactly C{names}.
        """
        expected = json.dumps(sorted(names), separators=(",", ":"))
        self.page.wait_for_function(
            "expected => JSON.stringify(Array.from(document.querySelectorAll('#online li'))"
            ".map(li => li.firstChild.textContent).sort()) === expected",
            arg=expected,
        )

    def consolePush(self, key: str, kind: str, target: str, data: str) -> str:
        """
        Send through the push console and wait for the API's answer.
        """
        self.page.fill("#api-key", key)
        self.page.select_option("#target-kind", kind)
        if kind != "broadcast":
            self.page.fill("#target", target)
        self.page.fill("#data", data)
        self.page.click("#push-button")
        self.page.wait_for_function("() => /^HTTP \\d+/.test(document.getElementById('answer').textContent)")
        return str(self.page.inner_text("#answer"))

    def close(self) -> None:
        """
        Close the visitor's context, and fail on any script error it had.
        """
        self.context.close()
        assert not self.errors, f"script errors on the page: {self.errors}"
