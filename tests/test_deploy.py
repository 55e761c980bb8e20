"""
The deployment guide's files, run for real: ``examples/deploy/realtime.service``
and ``.socket`` pass ``systemd-analyze verify`` and the unit's own command
line serves a socket inherited as systemd hands it over; Debian's nginx runs
``examples/deploy/nginx.conf`` (only its ports and paths changed) in front of
a real ``twistd -n realtime``, and a WebSocket client gets a push through it
over TLS with a certificate chain made here.

nginx runs as an ordinary process with its own prefix, pid, log and temp
paths, so no root is needed. Without ``/usr/sbin/nginx`` (``apt-get install
nginx-light``) or ``systemd-analyze`` those tests skip, unless
``REALTIME_REQUIRE_NGINX`` is set (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from realtime.config.options import DEFAULTS
from tests.certificates import issuedThroughIntermediate
from tests.nginxprocess import DEPLOY, Nginx, get, guideFile, require
from tests.serverprocess import ServerProcess, freePorts, run, twistdCommand
from tests.tlsclient import connectTLS

LOOPBACK_PORTS = ["--api-port", "tcp:0:interface=127.0.0.1", "--push-port", "tcp:0:interface=127.0.0.1"]

#: run as the launcher: make the descriptor given first fd 3 and describe it
#: in LISTEN_* for this very process, as systemd does, then exec the server
SYSTEMD_LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="realtime-web")
os.execv(sys.argv[2], sys.argv[2:])
"""


def unitCommand() -> list[str]:
    """
    The arguments after ``realtime`` of realtime.service's C{ExecStart}.
    """
    with open(os.path.join(DEPLOY, "realtime.service")) as f:
        text = f.read().replace("\\\n", " ")
    [line] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(line[len("ExecStart=") :])
    assert argv[1:4] == ["-n", "--pidfile=", "realtime"], argv
    return argv[4:]


def test_unitFilesVerify(tmp_path: Any) -> None:
    """
    systemd finds nothing to complain about in the unit files (their
    twistd path made this environment's, since verify checks it exists).
    """
    analyze = require(shutil.which("systemd-analyze"), "systemd-analyze (systemd)")
    for name in ("realtime.service", "realtime.socket"):
        with open(os.path.join(DEPLOY, name)) as f:
            text = f.read()
        (tmp_path / name).write_text(text.replace("/opt/realtime/.venv/bin/twistd", twistdCommand()[0]))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "realtime.service"), str(tmp_path / "realtime.socket")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_systemdWithoutSocket() -> None:
    """
    ``--port systemd:...`` started outside systemd says so in one line,
    not with a traceback.
    """
    for description in ("systemd:domain=INET:index=0", "systemd:domain=INET:name=realtime-web"):
        result = run(["--port", description])
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Traceback" not in output, output
        assert f"--port {description!r}: no socket inherited from systemd" in output, output


def lineRequest(port: int, line: bytes) -> bytes:
    """
    One request on the line port, and its answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            assert chunk, answer
            answer += chunk
    return answer.strip()


def pushUntilDelivered(linePort: int, line: bytes) -> None:
    """
    Push C{line} until the server answers ``ok``: the client's uid message
    may still be on its way when the first push arrives.
    """
    deadline = time.monotonic() + 15
    while (answer := lineRequest(linePort, line)) != b"ok":
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def test_unitServesInheritedSocket() -> None:
    """
    The unit's command line, given a listening socket as fd 3 with
    LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, serves WebSocket on it, and keeps
    its state (the SQLite store and the generated API key) in its working
    directory.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    launcher = [sys.executable, "-c", SYSTEMD_LAUNCHER, str(listener.fileno())]
    server = ServerProcess(
        *unitCommand(), *LOOPBACK_PORTS, defaultPorts=False, apiKey=None,
        launcher=launcher, passFds=[listener.fileno()],
    )  # fmt: skip
    try:
        server.start()
        listener.close()
        assert server.ports["port"] == port
        assert json.loads(server.waitFor("--port listening"))["level"] == "info"  # --log-format json
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
            ws.send("u1")
            pushUntilDelivered(server.ports["push-port"], b'{"uid":"u1","via":"systemd"}')
            assert ws.recv(timeout=10) == '{"uid":"u1","via":"systemd"}'
        assert sorted(n for n in os.listdir(server.cwd) if not n.startswith("realtime.sqlite3-")) == [
            "realtime-api.key",
            "realtime.sqlite3",
            "realtime.sqlite3.lock",
        ]
    finally:
        listener.close()
        server.stop()


def test_nginxTimeoutOutlastsPings() -> None:
    """
    nginx's proxy_read_timeout is longer than the server's ping cycle (a
    silent client is pinged after --ping-interval and dropped after twice
    that), so nginx never closes a healthy idle WebSocket first.
    """
    with open(os.path.join(DEPLOY, "nginx.conf")) as f:
        [timeout] = re.findall(r"proxy_read_timeout (\d+)s;", f.read())
    assert int(timeout) > 2 * DEFAULTS["ping-interval"]


# -- nginx in front of a real server ------------------------------------------


class Deployment:
    """
    nginx with the guide's config in front of a real server.
    """

    def __init__(self, nginx: Nginx, server: ServerProcess, http: int, https: int, ca: str) -> None:
        self.nginx, self.server, self.http, self.https = nginx, server, http, https
        self.tls = ssl.create_default_context(cafile=ca)

    def get(self, url: str) -> tuple[int, Any, bytes]:
        """
        GET C{url}, redirects not followed; status, headers and body.
        """
        return get(url, self.tls)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """
    The server on loopback, nginx in front of it with examples/deploy/nginx.conf.
    """
    nginx = Nginx()
    os.makedirs(nginx.path("acme", ".well-known", "acme-challenge"))
    with open(nginx.path("acme", ".well-known", "acme-challenge", "token"), "w") as f:
        f.write("challenge answer")
    certificates = issuedThroughIntermediate(nginx.directory)  # as Let's Encrypt hands them out
    server = ServerProcess().start()
    http, https = freePorts(2)
    config = guideFile("nginx.conf", {
        "listen 80;": f"listen 127.0.0.1:{http};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
        "http://127.0.0.1:8080": f"http://127.0.0.1:{server.ports['port']}",
        "/etc/letsencrypt/live/realtime.example.com/fullchain.pem": certificates["fullchain"],
        "/etc/letsencrypt/live/realtime.example.com/privkey.pem": certificates["key"],
        "/var/www/letsencrypt": nginx.path("acme"),
    })  # fmt: skip
    try:
        nginx.start({"realtime.conf": config}, waitFor=https)
        yield Deployment(nginx, server, http, https, certificates["root"])
    finally:
        server.stop()
        nginx.stop()


def test_pushThroughNginx(deployment: Deployment) -> None:
    """
    A WebSocket client connects through nginx over TLS, authenticates, and
    gets a backend's push.
    """
    url = f"wss://127.0.0.1:{deployment.https}/"
    with connectTLS(url, deployment.tls) as ws:
        ws.send("u1")
        pushUntilDelivered(deployment.server.ports["push-port"], b'{"uid":"u1","via":"nginx"}')
        assert ws.recv(timeout=10) == '{"uid":"u1","via":"nginx"}'


def test_pageAndHealthThroughNginx(deployment: Deployment) -> None:
    """
    The demo page and the health checks are served through nginx.
    """
    status, headers, body = deployment.get(f"https://127.0.0.1:{deployment.https}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, body[:200])
    status, _, body = deployment.get(f"https://127.0.0.1:{deployment.https}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_privateThingsStayPrivate(deployment: Deployment) -> None:
    """
    The HTTP API is not reachable through nginx (the web port has none),
    and /metrics is refused there.
    """
    for path in ("/api/stats", "/api/push"):
        status, _, body = deployment.get(f"https://127.0.0.1:{deployment.https}{path}")
        assert status == 404, (path, status, body)
    assert deployment.get(f"https://127.0.0.1:{deployment.https}/metrics")[0] == 403


def test_port80(deployment: Deployment) -> None:
    """
    Port 80 answers certificate challenges and redirects the rest to HTTPS.
    """
    status, _, body = deployment.get(f"http://127.0.0.1:{deployment.http}/.well-known/acme-challenge/token")
    assert (status, body) == (200, b"challenge answer")
    status, headers, _ = deployment.get(f"http://127.0.0.1:{deployment.http}/chat?x=1")
    assert status == 301 and headers["Location"].startswith("https://127.0.0.1") and "/chat?x=1" in headers["Location"]
