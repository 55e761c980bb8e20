"""
The parent's side of C{--workers N}: it binds the ports, starts N workers on
them, restarts a worker that dies, and stops them all on SIGTERM or SIGINT.

The parent runs no sessions and opens neither the broker nor the store: it
binds every listening option (with the same C{Listener} a single process
uses, so errors and the "listening on" lines are the same), takes the
sockets out of its own reactor (it never accepts), and hands them to each
worker as inherited descriptors (C{spawnProcess}'s C{childFDs}), where they
are adopted (L{realtime.workers.handoff}).  The kernel queues each new
connection on the one socket and whichever worker accepts first serves it;
a busy worker accepts less, so the load spreads without a balancer.

A worker that ends while the parent runs is started again, after a delay
that doubles with each quick death (L{Backoff}), so a worker that cannot
start does not spin the CPU; every death and restart is logged.  At stop
each worker gets SIGTERM (it closes its sessions with 1001 and leaves the
cluster), and one still running after C{stopTimeout} seconds gets SIGKILL.
"""

from __future__ import annotations

import os
import signal
import site
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated, ReactorNotRunning
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

import realtime
from realtime.workers.handoff import ENVIRONMENT, Handoff

__all__ = [
    "Backoff",
    "WorkerSupervisor",
    "workerCommand",
    "withoutWorkers",
    "workerEnvironment",
    "exitCleanlyOnSignals",
]

log = Logger()

#: the descriptor of a worker's first handed-over socket; 0 is the parent's
#: pipe (see L{realtime.workers.handoff}), 1 and 2 the parent's output
FIRST_SOCKET = 3


@dataclass(frozen=True)
class Backoff:
    """
    How long to wait before starting a dead worker again.

    @ivar first: the delay after a death that follows a stable run.
    @ivar longest: the most it grows to.
    @ivar stable: seconds of running after which a death counts as the
        first again.
    """

    first: float = 0.5
    longest: float = 30.0
    stable: float = 10.0

    def delay(self, failures: int) -> float:
        """
        The delay after C{failures} quick deaths in a row (0 for the first).
        """
        return float(min(self.longest, self.first * 2 ** min(failures, 32)))


def withoutWorkers(args: Sequence[str]) -> list[str]:
    """
    C{args} (realtime's options) without C{--workers}, in either spelling.
    """
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def twistdArguments(config: Mapping[str, Any] | None) -> list[str]:
    """
    The twistd options a worker repeats from the parent's (its reactor and
    where it logs), always in the foreground and without a pid file (the
    parent's is the parent's); the user and group are not repeated, the
    parent has already switched to them when it starts its workers.
    """
    args: list[str] = []
    if config is not None:
        if config.get("reactor"):
            args += ["--reactor", str(config["reactor"])]
        if config.get("logfile"):
            args += ["--logfile", str(config["logfile"])]
        elif not config.get("nodaemon") and not config.get("syslog"):
            # a daemon logs to twistd.log by default; its workers, in the
            # foreground, would log to the daemon's /dev/null
            args += ["--logfile", "twistd.log"]
        if config.get("syslog"):
            args += ["--syslog", "--prefix", str(config.get("prefix") or "twisted")]
        if config.get("umask") is not None:
            args += ["--umask", oct(int(config["umask"]))]
    return [*args, "--nodaemon", "--pidfile="]


def workerCommand(realtimeArgs: Sequence[str], twistdConfig: Mapping[str, Any] | None) -> list[str]:
    """
    The command line of a worker: this interpreter, twistd (as
    C{python -m realtime.workers}), and the options the parent was given.
    """
    # -P: the working directory is not put first on the path, so a
    # realtime/ there cannot stand in for the parent's code (see
    # workerEnvironment)
    return [
        sys.executable,
        "-P",
        "-m",
        "realtime.workers",
        *twistdArguments(twistdConfig),
        "realtime",
        *withoutWorkers(realtimeArgs),
    ]


def workerEnvironment(environ: Mapping[str, str], handoff: Handoff) -> dict[str, str]:
    """
    A worker's environment: the parent's, with the parent's realtime first
    on the path when it is not installed (a worker runs the parent's code,
    from a source tree too) and without systemd's socket variables (they
    describe the parent's descriptors).
    """
    env = {k: v for k, v in environ.items() if not k.startswith("LISTEN_")}
    source = os.path.dirname(os.path.dirname(os.path.abspath(realtime.__file__)))
    installed = {os.path.abspath(p) for p in (*site.getsitepackages(), site.getusersitepackages())}
    if source not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    env[ENVIRONMENT] = handoff.encode()
    return env


def familyOf(address: Any) -> str:
    """
    The address family name (L{realtime.workers.handoff.FAMILIES}) of a
    listening port's address.
    """
    if isinstance(address, IPv4Address):
        return "inet"
    if isinstance(address, IPv6Address):
        return "inet6"
    if isinstance(address, UNIXAddress):
        return "unix"
    raise ValueError(f"a listener on {address} cannot be handed to workers: only TCP, TLS and Unix sockets can")


class _Slot:
    """
    One worker place: the process in it now, and its restart history.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.pid: int | None = None
        self.startedAt = 0.0
        self.failures = 0
        self.restart: Any = None
        self.ended: list[Deferred[None]] = []


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, slot: _Slot) -> None:
        self._supervisor = supervisor
        self._slot = slot

    def processEnded(self, reason: Failure) -> None:
        self._supervisor._ended(self._slot, reason)


def describeEnd(reason: Failure) -> str:
    """
    How a process ended, in words.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        try:
            name = f" ({signal.Signals(value.signal).name})"
        except ValueError:
            name = ""
        return f"ended on signal {value.signal}{name}"
    if isinstance(value, (ProcessDone, ProcessTerminated)):
        return f"exited with status {value.exitCode}"
    return f"ended ({reason.getErrorMessage()})"


class WorkerSupervisor(MultiService):
    """
    The parent: its children are the listeners (bound in
    C{privilegedStartService}, before twistd drops privileges); once they
    listen it starts C{count} workers on their sockets.
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        command: Sequence[str],
        environ: Mapping[str, str],
        listeners: Mapping[str, Any],
        stopTimeout: float = 10.0,
        backoff: Backoff = Backoff(),
    ) -> None:
        """
        @param listeners: option -> its C{realtime.tap.Listener}, which this
            service adopts as children.
        """
        MultiService.__init__(self)
        self._reactor = reactor
        self._command = list(command)
        self._environ = dict(environ)
        self._listeners = dict(listeners)
        self._stopTimeout = stopTimeout
        self._backoff = backoff
        self._slots = [_Slot(index) for index in range(1, count + 1)]
        self._stopping = False
        self._childFDs: dict[int, Any] = {}
        self._sockets: dict[str, tuple[int, str]] = {}
        for listener in self._listeners.values():
            listener.setServiceParent(self)

    @property
    def pids(self) -> list[int | None]:
        """
        The process id in each worker place (C{None} while it waits to restart).
        """
        return [slot.pid if slot.process is not None else None for slot in self._slots]

    def startService(self) -> None:
        """
        Listen (the children), stop accepting here, start every worker.
        """
        MultiService.startService(self)
        self._childFDs = {0: "r", 1: 1, 2: 2}
        for number, (option, listener) in enumerate(self._listeners.items(), FIRST_SOCKET):
            port = listener.port
            # the workers accept; the parent only keeps the socket open
            self._reactor.removeReader(port)
            self._childFDs[number] = port.fileno()
            self._sockets[option] = (number, familyOf(port.getHost()))
        for slot in self._slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        handoff = Handoff(slot.index, len(self._slots), 0, self._sockets)
        slot.process = self._reactor.spawnProcess(
            _WorkerProtocol(self, slot),
            self._command[0],
            self._command,
            env=workerEnvironment(self._environ, handoff),
            path=os.getcwd(),
            childFDs=self._childFDs,
        )
        slot.pid = slot.process.pid
        slot.startedAt = self._reactor.seconds()
        log.info(
            "worker {index} of {count} started (pid {pid})", index=slot.index, count=len(self._slots), pid=slot.pid
        )

    def _ended(self, slot: _Slot, reason: Failure) -> None:
        pid, slot.process = slot.pid, None
        waiting, slot.ended = slot.ended, []
        if self._stopping:
            log.info("worker {index} (pid {pid}) stopped: {how}", index=slot.index, pid=pid, how=describeEnd(reason))
        else:
            ran = self._reactor.seconds() - slot.startedAt
            if ran >= self._backoff.stable:
                slot.failures = 0
            delay = self._backoff.delay(slot.failures)
            slot.failures += 1
            # how long it ran tells a crash at start (its error is printed
            # above, by the worker) from a death in service
            log.warn(
                "worker {index} (pid {pid}) {how} after {ran:.1f} s; starting it again in {delay:.1f} s",
                index=slot.index,
                pid=pid,
                how=describeEnd(reason),
                ran=ran,
                delay=delay,
            )
            slot.restart = self._reactor.callLater(delay, self._spawn, slot)
        for done in waiting:
            done.callback(None)

    def stopService(self) -> Deferred[None]:
        """
        SIGTERM every worker, SIGKILL those still running after the
        timeout, then close the sockets.
        """
        self._stopping = True
        for slot in self._slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
        waits = [self._stopWorker(slot) for slot in self._slots if slot.process is not None]
        stopped: Deferred[Any] = DeferredList(waits) if waits else succeed(None)
        stopped.addCallback(lambda _: MultiService.stopService(self))
        return stopped

    def _stopWorker(self, slot: _Slot) -> Deferred[None]:
        ended: Deferred[None] = Deferred()
        slot.ended.append(ended)
        self._signal(slot, "TERM")
        kill = self._reactor.callLater(self._stopTimeout, self._kill, slot)
        ended.addBoth(lambda result: (kill.cancel() if kill.active() else None, result)[1])
        return ended

    def _kill(self, slot: _Slot) -> None:
        log.warn(
            "worker {index} still runs {timeout} s after SIGTERM; killing it",
            index=slot.index,
            timeout=self._stopTimeout,
        )
        self._signal(slot, "KILL")

    def _signal(self, slot: _Slot, name: str) -> None:
        if slot.process is not None:
            try:
                slot.process.signalProcess(name)
            except ProcessExitedAlready:
                pass


def exitCleanlyOnSignals(reactor: Any) -> None:
    """
    Once the reactor runs, stop it on SIGTERM or SIGINT as twistd would,
    but let the parent exit 0.

    twistd's handlers end the process by re-raising the signal once it has
    stopped (status -15 for SIGTERM), which reads as a failure to a service
    manager; the parent's stop is an orderly one it chose (every worker
    stopped in turn), so it exits 0.  A second signal during the stop is
    ignored: the stop is already under way.
    """

    def stopOnce(number: int, frame: Any) -> None:
        log.info("{signal} received; stopping the workers", signal=signal.Signals(number).name)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_IGN)
        reactor.callFromThread(stop)

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping for another reason

    def install() -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, stopOnce)

    reactor.addSystemEventTrigger("after", "startup", install)
