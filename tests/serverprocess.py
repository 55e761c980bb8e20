"""
A real ``twistd -n realtime`` in a subprocess, on ports the kernel picks.

With the helpers that talk to it the way its users do (L{api}, L{linePush},
L{get}, L{publish}, L{waitUntil}), and L{tlsServer}.

The server logs the address each listener bound (``--port listening on
127.0.0.1:40123``); the harness reads those lines instead of guessing free
ports, so parallel runs never collide.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import selfSigned, sslEndpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = re.compile(r"--(port|api-port|push-port) listening on (\S+):(\d+)")
API_KEY = "integration-test-key"


def twistdCommand() -> list[str]:
    """
    The twistd of this interpreter's environment.
    """
    candidate = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def environment() -> dict[str, str]:
    """
    The environment for a server or CLI subprocess: the source tree first on
    the path, so the code under test is this checkout's.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """
    Start with C{start()}, read C{ports}, stop with C{stop()}.
    """

    def __init__(
        self,
        *args: str,
        cwd: str | None = None,
        defaultPorts: bool = True,
        apiKey: str | None = API_KEY,
        launcher: Sequence[str] = (),
        passFds: Sequence[int] = (),
        twistdOptions: Sequence[str] = (),
    ):
        """
        @param launcher: a command that runs the server command given after
            it (e.g. one that hands it a socket as systemd would).
        @param passFds: descriptors the server process inherits.
        @param twistdOptions: twistd's own options, before C{realtime} (e.g.
            C{-r asyncio}, which the benchmark compares with the default).
        """
        self.args = list(args)
        self.launcher = list(launcher)
        self.twistdOptions = list(twistdOptions)
        self.passFds = tuple(passFds)
        if defaultPorts:
            self.args = [
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--api-port",
                "tcp:0:interface=127.0.0.1",
                "--push-port",
                "tcp:0:interface=127.0.0.1",
            ] + self.args
        if apiKey is not None:
            self.args += ["--api-key", apiKey]
        self.apiKey = apiKey
        self._ownDir = cwd is None
        self.cwd = cwd or tempfile.mkdtemp(prefix="realtime-it-")
        self.ports: dict[str, int] = {}
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._changed = threading.Condition()

    @property
    def output(self) -> str:
        """
        Everything the server printed so far.
        """
        with self._changed:
            return "\n".join(self.lines)

    def start(self, timeout: float = 20.0, expect: Sequence[str] | None = None) -> ServerProcess:
        """
        Start the server and wait until every expected listener is bound.
        """
        command = self.launcher + twistdCommand() + self.twistdOptions + ["-n", "--pidfile=", "realtime"] + self.args
        self.process = subprocess.Popen(
            command,
            pass_fds=self.passFds,
            cwd=self.cwd,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        wanted = set(expect if expect is not None else ("port", "api-port", "push-port"))
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= set(self.ports):
                if self.process.poll() is not None and not self._reading:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stop()
                    raise RuntimeError(f"server did not start in {timeout}s:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.2))
        return self

    _reading = True

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                match = LISTENING.search(line)
                if match:
                    self.ports[match.group(1)] = int(match.group(3))
                self._changed.notify_all()
        with self._changed:
            self._reading = False
            self._changed.notify_all()

    def waitFor(self, text: str, timeout: float = 10.0) -> str:
        """
        Wait until a line containing C{text} is printed, and return it.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reading:
                    raise AssertionError(f"{text!r} not printed; output:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.2))

    def url(self, path: str = "/") -> str:
        """
        The WebSocket URL of C{path}.
        """
        return f"ws://127.0.0.1:{self.ports['port']}{path}"

    def apiUrl(self) -> str:
        """
        The HTTP API base URL.
        """
        return f"http://127.0.0.1:{self.ports['api-port']}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """
        Stop the server (SIGTERM: a clean shutdown) and return its exit status.
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class OutputLines:
    """
    The lines a subprocess writes to one pipe, read by a thread as they
    come, so a test waits for what it expects to be printed instead of for
    a time, however loaded the machine is.
    """

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._open = True
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._open = False
            self._changed.notify_all()

    def waitFor(self, text: str, count: int = 1, timeout: float = 120.0) -> list[str]:
        """
        Wait until C{count} lines containing C{text} were written; the
        timeout only keeps a broken run from hanging the suite.

        @return: those lines.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._open:
                    raise AssertionError(f"{text!r} not written {count} times; got:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 1.0))


def freePorts(count: int) -> list[int]:
    """
    C{count} distinct TCP ports free on loopback right now, for a server
    that must come back on the same ports after a restart.

    The kernel picks them; they are held together until all are chosen, so
    they differ, then released for the server to bind (a race only with
    another process binding the same ephemeral port in between).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def fixedPortArgs(ports: Sequence[int]) -> list[str]:
    """
    The listener options for C{ports} (web, API, line), on loopback.
    """
    web, api, line = ports
    return [
        "--port",
        f"tcp:{web}:interface=127.0.0.1",
        "--api-port",
        f"tcp:{api}:interface=127.0.0.1",
        "--push-port",
        f"tcp:{line}:interface=127.0.0.1",
    ]


class ServerTestCase(SynchronousTestCase):
    """
    One real server per test class, started with C{serverArgs}.
    """

    serverArgs: tuple[str, ...] = ()
    server: ServerProcess

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess(*cls.serverArgs).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()


def run(args: Sequence[str], cwd: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """
    Run ``twistd -n realtime ARGS`` to completion (for options that exit).
    """
    return subprocess.run(
        twistdCommand() + ["-n", "--pidfile=", "realtime", *args],
        cwd=cwd or tempfile.mkdtemp(prefix="realtime-it-"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def linePush(port: int, *lines: bytes) -> list[bytes]:
    """
    What a Workerman backend does: write JSON lines to the push port, read
    one answer line per line.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.splitlines()


def api(server: ServerProcess, method: str, path: str, body: bytes | None = None, key: str | None = API_KEY):
    """
    One HTTP API call: C{(status, decoded JSON body)}.
    """
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.apiUrl() + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def waitUntil(predicate, timeout: float = 5.0) -> None:
    """
    Poll C{predicate} (a check against the live server) until it holds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def get(server: ServerProcess, path: str) -> tuple[int, Any]:
    """
    A GET on the web port: status and decoded JSON.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['port']}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def publish(server: ServerProcess, channel: str, data: object) -> dict[str, Any]:
    """
    Publish through the HTTP API.
    """
    status, body = api(server, "POST", "/api/publish", json.dumps({"channel": channel, "data": data}).encode())
    assert status == 200, body
    return body


def tlsServer(*args: str) -> tuple[ServerProcess, str]:
    """
    A server with TLS on the web and API ports (and the line port plain),
    and the path of the certificate clients should trust.
    """
    keyPath, certPath = selfSigned()
    endpoint = sslEndpoint(keyPath, certPath)
    ports = ("--port", endpoint, "--api-port", endpoint, "--push-port", "tcp:0:interface=127.0.0.1")
    return ServerProcess(*ports, *args, defaultPorts=False).start(), certPath
