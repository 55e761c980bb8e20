"""
Debian's nginx run as an ordinary process for the deployment guide's tests:
its own prefix, pid, log and temp paths, so no root is needed, with the
guide's files (``examples/deploy/``) changed only where a test must (ports,
paths, addresses), and every change checked to still apply.

Without ``/usr/sbin/nginx`` (``apt-get install nginx-light``) the tests that
need it skip, unless ``REALTIME_REQUIRE_NGINX`` is set (``.ci/run`` sets
it): then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.serverprocess import ROOT

DEPLOY = os.path.join(ROOT, "examples", "deploy")
NGINX = os.environ.get("REALTIME_NGINX", "/usr/sbin/nginx")

MAIN_CONFIG = """
pid {d}/nginx.pid;
error_log {d}/error.log info;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{includes}
}}
"""


def require(path: str | None, what: str) -> str:
    """
    C{path} if the tool exists; else skip, or fail with C{REALTIME_REQUIRE_NGINX}.
    """
    if path and os.path.exists(path):
        return path
    problem = f"{what} is not installed"
    if os.environ.get("REALTIME_REQUIRE_NGINX"):
        pytest.fail(f"REALTIME_REQUIRE_NGINX is set but {problem}")
    pytest.skip(f"{problem}; set REALTIME_REQUIRE_NGINX to fail instead")


def guideFile(name: str, replacements: dict[str, str]) -> str:
    """
    The guide's C{examples/deploy/NAME} with each key replaced, every one of
    which must be there: a test never runs a file the guide no longer has.
    """
    with open(os.path.join(DEPLOY, name)) as f:
        text = f.read()
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in examples/deploy/{name}"
        text = text.replace(old, new)
    return text


class Nginx:
    """
    nginx serving the given files of its http block, stopped with C{stop()},
    which fails the test if nginx logged anything serious.
    """

    def __init__(self) -> None:
        self.binary = require(NGINX, f"nginx ({NGINX}; apt-get install nginx-light)")
        self.directory = tempfile.mkdtemp(prefix="realtime-nginx-")
        self.log = os.path.join(self.directory, "error.log")
        self.process: subprocess.Popen[bytes] | None = None

    def path(self, *parts: str) -> str:
        """
        A path inside nginx's own directory.
        """
        return os.path.join(self.directory, *parts)

    def start(self, files: dict[str, str], waitFor: int) -> Nginx:
        """
        Write C{files} (name -> text, each included in the http block) and
        run nginx until C{waitFor} accepts connections.
        """
        for name, text in files.items():
            with open(self.path(name), "w") as f:
                f.write(text)
        for root, dirs, _ in os.walk(self.directory):  # nginx's workers may run as another user when started as root
            for name in [".", *dirs]:
                os.chmod(os.path.join(root, name), 0o755)
        includes = "\n".join(f"    include {self.path(name)};" for name in files)
        with open(self.path("nginx.conf"), "w") as f:
            f.write(MAIN_CONFIG.format(d=self.directory, includes=includes))
        command = [self.binary, "-p", self.directory + "/", "-c", self.path("nginx.conf"), "-e", self.log]
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._waitForPort(waitFor)
        return self

    def _waitForPort(self, port: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise AssertionError(f"nginx did not start: {self.errors()}") from None
                time.sleep(0.1)

    def errors(self) -> str:
        """
        nginx's error log so far.
        """
        with open(self.log) as f:
            return f.read()

    def stop(self) -> None:
        """
        Stop nginx, remove its directory, and fail on an emergency, alert or
        critical line in its log.
        """
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
        errors = self.errors() if os.path.exists(self.log) else ""
        shutil.rmtree(self.directory, ignore_errors=True)
        assert not re.search(r"\[(emerg|alert|crit)\]", errors), errors


def get(url: str, tls: ssl.SSLContext) -> tuple[int, Any, bytes]:
    """
    GET C{url}, redirects not followed; status, headers and body.
    """

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=tls))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
