"""
Real C{redis-server} processes for the tests, on ports the kernel picks -
never the machine's own Redis on 6379, which other programs use.

Without the binary the tests that need one are skipped, or fail when
C{REALTIME_REQUIRE_REDIS} is set (as C{.ci/run} sets it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisServer", "requireRedis"]


def requireRedis() -> str:
    """
    The path of C{redis-server}; else skip, or fail with C{REALTIME_REQUIRE_REDIS}.
    """
    path = shutil.which("redis-server")
    if path is None:
        problem = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("REALTIME_REQUIRE_REDIS"):
            pytest.fail(f"REALTIME_REQUIRE_REDIS is set but {problem}")
        pytest.skip(f"{problem}; set REALTIME_REQUIRE_REDIS to fail instead")
    return path


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """
    One C{redis-server} keeping nothing on disk, on 127.0.0.1 and a free port.

    Started by the constructor and stopped by L{stop}; L{restart} keeps the
    port, so clients can reconnect to "the same Redis" after an outage.
    """

    def __init__(self, *extra: str) -> None:
        self.binary = requireRedis()
        self.extra = extra
        self.directory = tempfile.mkdtemp(prefix="realtime-redis-")
        self.port = _freePort()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """
        Start the server and wait until it answers.
        """
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", self.directory, *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {command}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def command(self, *words: str) -> bytes:
        """
        One command in Redis's inline protocol, answered raw (for the tests'
        own checks and for C{FLUSHALL} between tests).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def stop(self) -> None:
        """
        Kill the server and wait for it.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
