"""
The servers the benchmark starts, pinned and ready: the contract every peer
implements (bench/README.rst) and how each kind is started.

Shared by C{run.py} (the single-process comparisons) and C{scaleout.py} (the
runs over several processes and Redis); standard library only, besides our
own C{tests/serverprocess.py}, which starts our server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SERVER_CPU = 0
LOADGEN_CPU = 1
API_KEY = "bench-key"
READY = re.compile(r"READY ws=(\d+) push=(\d+) stats=(\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from tests.serverprocess import ServerProcess  # noqa: E402


@contextlib.contextmanager
def pinnedTo(cpus: int | Iterable[int]) -> Iterator[None]:
    """
    Run the body with the calling thread pinned to C{cpus}, so a process it
    starts inherits that CPU mask (how our server, started by
    C{tests.serverprocess}, ends up on the server core without copying that
    module's start-up code).
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus} if isinstance(cpus, int) else set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def processCpuTimes(pid: int) -> tuple[float, float]:
    """
    User and system CPU seconds used so far by process C{pid} (all its
    threads), or zeros if it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def processCpu(pid: int) -> float:
    """
    CPU seconds used so far by process C{pid} (all its threads), or 0 if gone.
    """
    return sum(processCpuTimes(pid))


def busyCpuSeconds() -> float:
    """
    CPU seconds spent in user and system mode by everything on the machine
    (interrupt time excluded, since loopback traffic we cause lands there).
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) / CLOCK_TICKS


@dataclass
class Running:
    """
    A started server: where to reach it and how to stop it.
    """

    name: str
    pid: int
    wsPort: int
    pushPort: int
    statsPort: int
    stop: Callable[[], None]
    affinity: list[int] = field(default_factory=list)
    #: every WebSocket port the generator spreads its connections over
    #: (round-robin); empty: C{wsPort} alone
    wsPorts: list[int] = field(default_factory=list)
    #: every process of the server, whose CPU time is the server's; empty:
    #: C{pid} alone
    pids: list[int] = field(default_factory=list)
    #: processes the server relies on (redis-server), measured apart
    auxPids: list[int] = field(default_factory=list)

    def allPorts(self) -> list[int]:
        return self.wsPorts or [self.wsPort]

    def allPids(self) -> list[int]:
        return self.pids or [self.pid]


class Peer:
    """
    A server implementing the bench contract.
    """

    name = ""
    #: C{True} for a server of several processes, which runs only in the
    #: scale-out groups made for it (C{scaleout.py})
    scaleout = False

    def available(self) -> str | None:
        """
        C{None} if it can run here, else why not.
        """
        return None

    def start(self) -> Running:
        """
        Start it, pinned to the server core, and wait until it listens.
        """
        raise NotImplementedError


class Ours(Peer):
    """
    ``twistd -n realtime --auth uid-first-packet --routing uid``, started by
    the integration tests' own harness.

    @ivar root: the source tree the server runs from: this checkout, or
        another revision's (L{checkout}), whose own C{tests/serverprocess.py}
        then starts it with that tree first on C{PYTHONPATH}.
    @ivar reactor: twistd's C{-r} (e.g. C{asyncio}), or C{None} for its
        default (epoll).
    @ivar args: more options of C{realtime}.
    @ivar cpus: the CPUs it may run on.
    """

    def __init__(
        self,
        name: str = "ours",
        root: str = ROOT,
        *,
        reactor: str | None = None,
        args: tuple[str, ...] = (),
        cpus: int | tuple[int, ...] = SERVER_CPU,
    ) -> None:
        self.name = name
        self.root = root
        self.reactor = reactor
        self.args = args
        self.cpus = cpus

    def available(self) -> str | None:
        if not os.path.exists(os.path.join(self.root, "tests", "serverprocess.py")):
            return f"{self.root} has no tests/serverprocess.py to start it with"
        return None

    def harness(self) -> Any:
        """
        The C{ServerProcess} class of C{root}'s own harness: its module puts
        its own tree first on the server's C{PYTHONPATH}.
        """
        if self.root == ROOT:
            return ServerProcess
        name = f"_serverprocess_{abs(hash(self.root))}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, os.path.join(self.root, "tests", "serverprocess.py"))
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return module.ServerProcess

    def launch(self, *more: str) -> Any:
        """
        Start one server process with C{args} and C{more}, pinned to
        C{cpus}, and wait until it listens.

        @return: its C{ServerProcess}.
        """
        options = {"twistdOptions": ("-r", self.reactor)} if self.reactor else {}
        server = self.harness()(
            "--auth", "uid-first-packet", "--routing", "uid", *self.args, *more, apiKey=API_KEY, **options
        )
        with pinnedTo(self.cpus):
            server.start(60)
        return server

    def start(self) -> Running:
        server = self.launch()
        assert server.process is not None
        pid = server.process.pid
        return Running(
            self.name,
            pid,
            server.ports["port"],
            server.ports["push-port"],
            server.ports["api-port"],
            lambda: server.stop() and None,
            sorted(os.sched_getaffinity(pid)),
        )


class CommandPeer(Peer):
    """
    A peer started as a command that prints ``READY ws=.. push=.. stats=..``.
    """

    def __init__(self, name: str, argv: list[str], cwd: str, need: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.need = need

    def available(self) -> str | None:
        for path in self.need:
            if not os.path.exists(path):
                return f"{path} is missing"
        return None

    def launch(self, *more: str) -> tuple[subprocess.Popen[str], int, int, int]:
        """
        Start the command with C{more} arguments, pinned to the server core,
        and wait for its C{READY} line.

        @return: the process and its WebSocket, push and stats ports.
        """
        process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *self.argv, *more],
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + 20
        lines: list[str] = []
        match = None
        while match is None:
            line = process.stdout.readline()
            if not line or time.monotonic() > deadline:
                stopProcess(process)
                raise RuntimeError(f"{self.name} did not start:\n" + "".join(lines))
            lines.append(line)
            match = READY.search(line)
        # keep draining its output so a chatty peer never blocks on a full pipe
        threading.Thread(target=process.stdout.read, daemon=True).start()
        ws, push, stats = (int(x) for x in match.groups())
        return process, ws, push, stats

    def start(self) -> Running:
        process, ws, push, stats = self.launch()
        return Running(
            self.name,
            process.pid,
            ws,
            push,
            stats,
            lambda: stopProcess(process),
            sorted(os.sched_getaffinity(process.pid)),
        )


def stopProcess(process: subprocess.Popen[Any]) -> None:
    """
    SIGTERM, then SIGKILL if it has not exited within 10 s.
    """
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
