"""
Run the benchmark suite in one command and print the table: our server
against Node ``ws``, asyncio ``websockets`` and a C peer.

    .venv/bin/python bench/run.py            # full: 3 rounds, 4 peers, ~20 minutes
    .venv/bin/python bench/run.py --quick    # development: ~2 minutes
    .venv/bin/python bench/run.py --profile  # py-spy our server (needs py-spy)

(``.venv`` is the virtualenv README.rst's commands create.)

Why it is built this way (see bench/README.rst):

- The server under test runs on CPU 0 and the C load generator on CPU 1, so
  neither steals the other's core; everything runs on loopback.
- Peers run interleaved (for each group of scenarios: A B C D, then again,
  for every round) and each figure is the median over rounds, because one
  server's runs vary by up to 2x on these machines.  Ratios are taken against
  Node ws measured in the same command, never against old numbers.
- Every run starts a fresh server, so one scenario's leftovers (buffers,
  garbage, a grown heap) never bias the next peer.
- The load generator checks every message byte for byte and per-connection
  order; a run with any failed check is reported as invalid, not averaged.
- CPU time used by processes that are not part of the run (other sessions on
  a shared machine) is measured during each run and shown, so a noisy
  neighbour is visible instead of silently skewing a median.

Standard library only; run it with the interpreter whose environment has the
server's dependencies (its ``twistd`` is the one started).  The exit status
is 1 when a run's checks failed, so a broken harness or server is noticed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.scaleout import NODE_REDIS_PEER, OursOnRedis, compared, comparisonTable, scaleoutPeers  # noqa: E402
from bench.servers import (  # noqa: E402
    API_KEY,
    BENCH,
    LOADGEN_CPU,
    ROOT,
    SERVER_CPU,
    CommandPeer,
    Ours,
    Peer,
    Running,
    busyCpuSeconds,
    processCpu,
)

RESULTS = os.path.join(BENCH, "results")
LOADGEN = os.path.join(BENCH, "loadgen", "loadgen")
C_PEER = os.path.join(BENCH, "peers", "c-batched", "peer")
NODE_PEER = os.path.join(BENCH, "peers", "node-ws")
PY_PEER = os.path.join(BENCH, "peers", "python-websockets", "server.py")


# -- processes ---------------------------------------------------------------


def raiseFdLimit() -> int:
    """
    Raise this process's soft open-file limit to the hard limit; children
    (servers, the load generator) inherit it.

    @return: the new limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def raisePriority(niceness: int) -> int:
    """
    Give this process, and so every server and generator it starts, a
    higher scheduling priority, so that other work on a shared machine
    (another session's tests on the same two cores) disturbs the figures less.
    Bounded to this run: nothing outlives it.

    @return: the niceness in force (unchanged if not allowed).
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness < current:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        except PermissionError:
            print(f"cannot raise priority to nice {niceness} (not root); continuing at {current}", file=sys.stderr)
    return os.getpriority(os.PRIO_PROCESS, 0)


def allPeers() -> dict[str, Peer]:
    """
    Every peer the suite knows, by name.
    """
    return {
        "ours": Ours(),
        "node-ws": CommandPeer(
            "node-ws", ["node", "server.js"], NODE_PEER, [os.path.join(NODE_PEER, "node_modules", "ws")]
        ),
        "python-websockets": CommandPeer(
            "python-websockets", [sys.executable, PY_PEER], os.path.dirname(PY_PEER), [PY_PEER]
        ),
        "c-batched": CommandPeer("c-batched", [C_PEER], os.path.dirname(C_PEER), [C_PEER]),
        **scaleoutPeers(),
    }


#: the peers of a full run's single-process groups (C{--peers} picks others)
DEFAULT_PEERS = ["ours", "node-ws", "python-websockets", "c-batched"]
QUICK_PEERS = ["ours", "node-ws", "c-batched"]


#: peer name -> the revision it was asked as and its full hash (for the report)
BUILDS: dict[str, str] = {}


def checkout(revision: str, into: str) -> tuple[str, str]:
    """
    Export C{revision} of this repository (a commit, tag or branch; C{HEAD}
    is the last commit, not the working tree) into a new directory under
    C{into}, for a peer C{ours@<short hash>} running that build.

    @return: the peer's name and the tree's path.
    """
    short = subprocess.run(
        ["git", "rev-parse", "--short", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    if short.returncode:
        raise SystemExit(f"--baseline {revision}: {short.stderr.strip()}")
    name = f"ours@{short.stdout.strip()}"
    full = subprocess.run(["git", "rev-parse", short.stdout.strip()], cwd=ROOT, capture_output=True, text=True)
    BUILDS[name] = f"--baseline {revision} = {full.stdout.strip()}"
    tree = tempfile.mkdtemp(prefix=f"{name}-", dir=into)
    archive = subprocess.Popen(
        ["git", "archive", "--format=tar", short.stdout.strip()], cwd=ROOT, stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", tree], stdin=archive.stdout, check=True)
    if archive.wait():
        raise SystemExit(f"--baseline {revision}: git archive failed")
    return name, tree


# -- building ----------------------------------------------------------------


def build() -> None:
    """
    Build the generator and the C peer, check the generator's frame reader,
    and install the Node peer's one dependency if it is missing.
    """
    for directory in (os.path.dirname(LOADGEN), os.path.dirname(C_PEER)):
        subprocess.run(["make", "-s", "-C", directory], check=True)
    subprocess.run([LOADGEN, "--selftest"], check=True, stdout=subprocess.DEVNULL)
    installNodePeer(NODE_PEER, "ws")


def installNodePeer(directory: str, module: str) -> None:
    """
    C{npm ci} the Node peer in C{directory} (its locked dependencies from
    the registry, into its C{node_modules}, not committed) unless C{module}
    is there already.
    """
    if not os.path.exists(os.path.join(directory, "node_modules", module)) and shutil.which("npm"):
        print(f"installing the {os.path.basename(directory)} peer's dependencies (npm ci)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=directory, check=True)


# -- one run -----------------------------------------------------------------


@dataclass
class Group:
    """
    Scenarios run on one fresh server over one set of connections.
    """

    name: str
    connections: int
    scenarios: str
    extra: list[str] = field(default_factory=list)
    #: a scale-out group (C{scaleout.py}) runs these peers, the first
    #: compared with the others; empty: any single-process peer
    peers: tuple[str, ...] = ()
    #: more peers a scale-out group takes when C{--peers} names them
    allowed: tuple[str, ...] = ()

    def chosen(self, known: dict[str, Peer], names: list[str], explicit: bool) -> list[str]:
        """
        The peers of C{names} (C{--peers}, or the default list when not
        C{explicit}) this group runs, in order.
        """
        if not self.peers:
            return [name for name in names if not known[name].scaleout]
        # another revision's build of one of this group's peers (--baseline)
        builds = [name for name in names if "@" in name and name.partition("@")[0] in self.peers and known[name].scaleout]
        if not explicit:
            return [*self.peers, *builds]
        return [name for name in names if name in self.peers or name in self.allowed or name in builds]


#: the groups a run without C{--groups} runs; C{--groups scaleout} is SCALEOUT_GROUPS
DEFAULT_GROUPS = ("fanout-1k", "load-10k", "idle")
SCALEOUT_GROUPS = ("redis-fanout-1k", "redis-fanout-10k", "redis-unicast", "workers")


def plan(quick: bool, capacity: int) -> list[Group]:
    """
    The groups of a run; C{--quick} shortens every window.

    Beyond ~25,000 connections the generator spreads them over several
    loopback source addresses: one address has only ip_local_port_range
    ports (~28k) toward one server port.
    """
    sources = ["--sources", str(capacity // 20000 + 1)] if capacity > 25000 else []
    return [
        Group("fanout-1k", 1000, "fanout,fanout-pipelined"),
        Group(
            "load-10k",
            10000,
            "unicast-rate,unicast-max,fanout,fanout-pipelined,fanout-paced,fanout-burst,fanout-serial",
            ["--drain-timeout", "30"],
        ),
        Group("idle", capacity, "idle", ["--baseline-after", "2000", *sources]),
        # the scale-out groups (bench/README.rst, The scale-out groups)
        Group("redis-fanout-1k", 1000, "fanout,fanout-pipelined", [], ("ours", "ours-redis", "ours-redis1"),
              ("node-ioredis",)),
        Group("redis-fanout-10k", 10000, "fanout,fanout-pipelined", ["--drain-timeout", "30"],
              ("ours", "ours-redis", "ours-redis1"), ("node-ioredis",)),
        Group("redis-unicast", 10000, "unicast-rate,unicast-max", ["--drain-timeout", "30"],
              ("ours-redis", "node-ioredis"), ("ours", "node-ws")),
        Group("workers", 10000, "unicast-max,fanout", ["--drain-timeout", "30"], ("ours-workers1", "ours-workers2")),
    ]  # fmt: skip


def runGroup(peer: Peer, group: Group, timing: list[str], verbose: bool) -> dict[str, Any]:
    """
    Start C{peer}, run the generator with C{group}, stop the peer.

    @return: the generator's report plus what this harness measured around
        it (other processes' CPU use, the peer's CPU mask).
    """
    running = peer.start()
    try:
        command = [
            "taskset", "-c", str(LOADGEN_CPU), LOADGEN,
            "--port", ",".join(str(port) for port in running.allPorts()),
            "--push-port", str(running.pushPort),
            "--stats-port", str(running.statsPort),
            "--key", API_KEY,
            "--pid", ",".join(str(pid) for pid in running.allPids()),
            *(["--aux-pid", ",".join(str(pid) for pid in running.auxPids)] if running.auxPids else []),
            "-n", str(group.connections),
            "--scenarios", group.scenarios,
            *timing,
            *group.extra,
        ]  # fmt: skip
        measured = [*running.allPids(), *running.auxPids]
        serverBefore = sum(processCpu(pid) for pid in measured)
        childrenBefore = resource.getrusage(resource.RUSAGE_CHILDREN)
        selfBefore = time.process_time()
        busyBefore = busyCpuSeconds()
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - started
        childrenAfter = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (
            sum(processCpu(pid) for pid in measured)
            - serverBefore
            + (childrenAfter.ru_utime + childrenAfter.ru_stime)
            - (childrenBefore.ru_utime + childrenBefore.ru_stime)
            + time.process_time()
            - selfBefore
        )
        otherLoad = max(0.0, (busyCpuSeconds() - busyBefore - ours) / wall)
    finally:
        running.stop()
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {"checks": {"error": f"no report (exit {result.returncode}): {result.stderr[-500:]}"}}
    report["exitCode"] = result.returncode
    report["otherLoad"] = round(otherLoad, 3)
    report["wallSeconds"] = round(wall, 2)
    report["serverAffinity"] = running.affinity
    report["serverPids"] = running.allPids()
    report["auxPids"] = running.auxPids
    report["problems"] = problems(report)
    if verbose or report["problems"]:
        print(result.stderr.rstrip(), file=sys.stderr)
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """
    Why a run's numbers cannot be trusted, if they cannot.
    """
    found = []
    checks = report.get("checks", {})
    for key in ("orderErrors", "corrupt", "foreign", "lineFail", "lineErrors", "connectFailures", "closedByServer"):
        if checks.get(key):
            found.append(f"{key}={checks[key]}")
    if checks.get("error"):
        found.append(checks["error"])
    for name, scenario in report.get("scenarios", {}).items():
        if scenario.get("lost"):
            found.append(f"{name}: {scenario['lost']} messages lost")
        if scenario.get("drained") is False:
            found.append(f"{name}: did not drain")
    return found


# -- the table ---------------------------------------------------------------


@dataclass
class Metric:
    """
    One row of the table: where its figure is in a report, and its target.
    """

    key: str
    label: str
    group: str
    path: tuple[str, ...]
    higherIsBetter: bool
    target: float | None
    unit: str


METRICS = [
    Metric("fanout1k", "broadcast fan-out, 1,000 conns, deliveries/s", "fanout-1k",
           ("scenarios", "fanout", "deliveriesPerSec"), True, 2.0, "/s"),
    Metric("fanout1kPipelined", "  pipelined 50 unanswered, 1,000 conns", "fanout-1k",
           ("scenarios", "fanout-pipelined", "deliveriesPerSec"), True, 2.0, "/s"),
    Metric("fanout10k", "broadcast fan-out, 10,000 conns, deliveries/s", "load-10k",
           ("scenarios", "fanout", "deliveriesPerSec"), True, 5.0, "/s"),
    Metric("fanout10kPipelined", "  pipelined 50 unanswered, 10,000 conns", "load-10k",
           ("scenarios", "fanout-pipelined", "deliveriesPerSec"), True, 5.0, "/s"),
    Metric("fanout10kPaced", "  one every ms, 50 unanswered, 10,000 conns", "load-10k",
           ("scenarios", "fanout-paced", "deliveriesPerSec"), True, 5.0, "/s"),
    Metric("fanout10kBurst", "  bursts of 50, 10,000 conns", "load-10k",
           ("scenarios", "fanout-burst", "deliveriesPerSec"), True, 5.0, "/s"),
    Metric("fanout10kSerial", "  one at a time (none to coalesce), 10,000 conns", "load-10k",
           ("scenarios", "fanout-serial", "deliveriesPerSec"), True, None, "/s"),
    Metric("unicastMax", "push to random uids, 10,000 conns, max deliveries/s", "load-10k",
           ("scenarios", "unicast-max", "deliveriesPerSec"), True, 1.0, "/s"),
    Metric("unicastP99", "push 2,000/s to random uids, p99 latency ms", "load-10k",
           ("scenarios", "unicast-rate", "latencyMs", "p99"), False, 1.0, "ms"),
    Metric("unicastP50", "push 2,000/s to random uids, p50 latency ms", "load-10k",
           ("scenarios", "unicast-rate", "latencyMs", "p50"), False, None, "ms"),
    Metric("connectRate", "connect rate, handshakes+auth/s (10k ramp)", "load-10k",
           ("connect", "registeredPerSec"), True, 1.0, "/s"),
    Metric("idleBytes", "memory per idle authenticated conn, bytes", "idle",
           ("scenarios", "idle", "bytesPerConnection"), False, 1.0, "B"),
    Metric("projected100k", "projected RSS at 100,000 idle conns, MiB", "idle",
           ("scenarios", "idle", "projectedRss100k"), False, None, "MiB"),
]  # fmt: skip


def dig(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """
    The number at C{path} in a report, or C{None}.
    """
    value: Any = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


def summarize(runs: list[dict[str, Any]], peers: list[str]) -> dict[str, Any]:
    """
    Medians per peer and metric over the valid runs, ratios against Node ws
    (ours', and every other build of ours' in C{peerRatios}), ours against
    each other build (C{versusBuilds}: after / before), and whether each
    target is met.
    """
    medians: dict[str, dict[str, float | None]] = {}
    spread: dict[str, dict[str, list[float]]] = {}
    for peer in peers:
        medians[peer] = {}
        spread[peer] = {}
        for metric in METRICS:
            values = [
                v
                for run in runs
                if run["peer"] == peer and run["group"] == metric.group and not run["report"]["problems"]
                for v in [dig(run["report"], metric.path)]
                if v is not None
            ]
            if metric.key == "projected100k":
                values = [v / 2**20 for v in values]
            spread[peer][metric.key] = sorted(values)
            medians[peer][metric.key] = statistics.median(values) if values else None

    def ratio(a: str, b: str, key: str) -> float | None:
        x, y = medians.get(a, {}).get(key), medians.get(b, {}).get(key)
        return x / y if x is not None and y else None

    builds = [p for p in peers if p.startswith("ours@")]
    ratios = {metric.key: ratio("ours", "node-ws", metric.key) for metric in METRICS}
    peerRatios = {p: {m.key: ratio(p, "node-ws", m.key) for m in METRICS} for p in ["ours", *builds]}
    versus = {b: {m.key: ratio("ours", b, m.key) for m in METRICS} for b in builds}
    met: dict[str, bool | None] = {}
    for metric in METRICS:
        value = ratios[metric.key]
        if metric.target is None or value is None:
            met[metric.key] = None
        elif metric.higherIsBetter:
            met[metric.key] = value >= metric.target
        else:
            met[metric.key] = value <= metric.target
    return {
        "medians": medians,
        "values": spread,
        "ratios": ratios,
        "peerRatios": peerRatios,
        "versusBuilds": versus,
        "targetsMet": met,
    }


def fmt(value: float | None, unit: str) -> str:
    """
    A figure as the table shows it.
    """
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def table(summary: dict[str, Any], peers: list[str], runs: list[dict[str, Any]]) -> str:
    """
    The results as a fixed-width text table (also pasted into README.rst):
    a ratio against Node for ours and for every other build of ours run
    with it (C{--baseline}), and ours against each of those builds.
    """
    builds = [p for p in peers if p.startswith("ours@")]
    header = [
        "scenario (medians)",
        *peers,
        "ours/node",
        *(f"{b[len('ours') :]}/node" for b in builds),
        *(f"ours/{b[len('ours') :]}" for b in builds),
        "target",
        "met",
    ]
    rows = [header]
    ratio = lambda value: "-" if value is None else f"{value:.2f}x"  # noqa: E731
    for metric in METRICS:
        if all(summary["medians"][p][metric.key] is None for p in peers):
            continue
        target = (
            "-"
            if metric.target is None
            else (f">= {metric.target:.1f}x" if metric.higherIsBetter else f"<= {metric.target:.1f}x")
        )
        met = summary["targetsMet"][metric.key]
        rows.append(
            [
                metric.label,
                *(fmt(summary["medians"][p][metric.key], metric.unit) for p in peers),
                ratio(summary["ratios"][metric.key]),
                *(ratio(summary["peerRatios"][b][metric.key]) for b in builds),
                *(ratio(summary["versusBuilds"][b][metric.key]) for b in builds),
                target,
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row))
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for b in builds:
        lines.append(f"{b}: {BUILDS.get(b, '?')}")
    lines.append(loadLine(runs))
    return "\n".join(lines)


def loadLine(runs: list[dict[str, Any]]) -> str:
    """
    How many runs were invalid (and why), and how busy the rest of the
    machine was meanwhile.
    """
    invalid = [r for r in runs if r["report"]["problems"]]
    other = [r["report"]["otherLoad"] for r in runs]
    lines = [
        f"{len(runs)} runs, {len(invalid)} invalid (excluded); CPU used by other processes during runs: "
        f"median {statistics.median(other) if other else 0:.2f} cores, max {max(other, default=0):.2f}"
    ]
    for r in invalid:
        lines.append(f"  invalid: {r['peer']} {r['group']} round {r['round']}: {'; '.join(r['report']['problems'])}")
    return "\n".join(lines)


def generatorEvidence(runs: list[dict[str, Any]]) -> str:
    """
    The load generator's own CPU use next to the best figure any peer
    reached: if it drove the fastest peer harder than ours while not using
    its whole core, it is not what limits ours.  With each peer's CPU time
    per delivery, which other work on the machine disturbs less than a rate
    (it slows a server down without making its deliveries much dearer).
    """
    lines = [
        "generator headroom and server cost (medians; 'core busy in all' includes interrupts and other processes on "
        "that core; us/delivery is the server's CPU time per delivery):"
    ]
    for group, scenario in (
        ("fanout-1k", "fanout"),
        ("fanout-1k", "fanout-pipelined"),
        ("load-10k", "fanout"),
        ("load-10k", "fanout-pipelined"),
        ("load-10k", "fanout-paced"),
        ("load-10k", "fanout-burst"),
        ("load-10k", "fanout-serial"),
        ("load-10k", "unicast-max"),
    ):
        best: dict[str, list[tuple[float, float, float, float]]] = {}
        for run in runs:
            s = run["report"].get("scenarios", {}).get(scenario)
            if run["group"] != group or not s or run["report"]["problems"]:
                continue
            cores = s.get("coreBusy", [-1, -1])
            rate = s["deliveriesPerSec"]
            cost = 1e6 * s.get("serverCpu", -1) / rate if rate > 0 and s.get("serverCpu", -1) >= 0 else -1
            best.setdefault(run["peer"], []).append(
                (rate, s["loadgenCpu"], cores[LOADGEN_CPU] if len(cores) > 1 else -1, cost)
            )
        parts = []
        for peer, values in best.items():
            rate = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            core = statistics.median(v[2] for v in values)
            cost = statistics.median(v[3] for v in values)
            parts.append(
                f"{peer} {rate / 1000:.0f}k/s, {cost:.2f} us/delivery "
                f"(generator {cpu:.0%} of a core; core {core:.0%} busy in all)"
            )
        if parts:
            lines.append(f"  {group} {scenario}: " + ", ".join(parts))
    return "\n".join(lines)


# -- profiling -----------------------------------------------------------------


def collapsedSummary(path: str, top: int = 22) -> str:
    """
    Self and inclusive time per function from py-spy's collapsed stacks,
    plus self time per source line (where a system call shows up as the
    line that makes it, e.g. C{untilConcludes} around C{socket.send}).
    """
    selfLines: dict[str, int] = {}
    selfFunctions: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [re.sub(r" \(.*/(site-packages|lib/python3\.\d+)/", " (", frame) for frame in stack.split(";")]
            functions = [re.sub(r":\d+\)$", ")", frame) for frame in frames]
            selfLines[frames[-1]] = selfLines.get(frames[-1], 0) + n
            selfFunctions[functions[-1]] = selfFunctions.get(functions[-1], 0) + n
            for function in set(functions):
                inclusive[function] = inclusive.get(function, 0) + n
    out = [f"{total} samples (only while the server runs Python or is in a system call; idle waits excluded)"]
    for title, table in (
        ("self time by function", selfFunctions),
        ("self time by line", selfLines),
        ("inclusive time by function", inclusive),
    ):
        out += ["", f"{title}:"]
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"  {100 * n / total:5.1f}%  {frame}")
    return "\n".join(out)


def startGenerator(
    running: Running, connections: int, scenario: str, warmup: float, duration: float, *extra: str
) -> subprocess.Popen[str]:
    """
    The generator running C{scenario} against C{running} (every port and
    process of it), once it has connected and started the scenario; its
    report is on its standard output when it ends.
    """
    command = [
        "taskset", "-c", str(LOADGEN_CPU), LOADGEN,
        "--port", ",".join(str(port) for port in running.allPorts()), "--push-port", str(running.pushPort),
        "--stats-port", str(running.statsPort), "--key", API_KEY,
        "--pid", ",".join(str(pid) for pid in running.allPids()),
        "-n", str(connections), "--scenarios", scenario, "--warmup", str(warmup), "--duration", str(duration), *extra,
    ]  # fmt: skip
    generator = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert generator.stderr is not None
    for line in generator.stderr:
        if "scenario" in line:
            break
    return generator


def profile(
    duration: float, stamp: str, scenarios: tuple[str, ...] = ("fanout", "unicast-max"), results: str = RESULTS
) -> None:
    """
    Profile our server with py-spy during the fan-out and unicast-max
    scenarios at 10,000 connections: a flame graph (SVG) and collapsed stacks
    per scenario in bench/results/, and a text summary printed.
    """
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        raise SystemExit("py-spy is not installed: pip install py-spy (into the server's environment)")
    for scenario in scenarios:
        running = Ours().start()
        try:
            generator = startGenerator(running, 10000, scenario, 2.0, 2 * duration + 4)
            time.sleep(2)
            base = os.path.join(results, f"profile-{stamp}-{scenario}")
            spy = ["taskset", "-c", str(LOADGEN_CPU), pyspy, "record", "--pid", str(running.pid),
                   "--duration", str(int(duration)), "--rate", "200", "--nonblocking"]  # fmt: skip
            subprocess.run([*spy, "--format", "flamegraph", "-o", base + ".svg"], check=True, capture_output=True)
            subprocess.run([*spy, "--format", "raw", "-o", base + ".collapsed"], check=True, capture_output=True)
            out, _ = generator.communicate(timeout=120)
        finally:
            running.stop()
        summary = collapsedSummary(base + ".collapsed")
        try:
            rate = json.loads(out)["scenarios"][scenario]["deliveriesPerSec"]
        except (ValueError, KeyError):
            rate = float("nan")
        text = (
            f"== ours, {scenario}, 10,000 connections ({rate / 1000:.1f}k deliveries/s while sampled) ==\n{summary}\n"
        )
        with open(base + ".txt", "w") as f:
            f.write(text)
        print(text, flush=True)


# -- main ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short windows, fewer peers (~2 min)")
    parser.add_argument("--rounds", type=int, help="rounds of every peer (default 3, quick 1)")
    parser.add_argument(
        "--peers",
        help="comma-separated peers (default ours,node-ws,python-websockets,c-batched; a scale-out group runs its "
        "own unless named: ours-redis,node-ioredis,ours-workers1,ours-workers2; ours-asyncio for the reactor)",
    )
    parser.add_argument(
        "--groups",
        help="comma-separated groups to run (default fanout-1k,load-10k,idle; scale-out: redis-fanout-1k,"
        "redis-fanout-10k,redis-unicast,workers, or all four as 'scaleout')",
    )
    parser.add_argument("--capacity", type=int, help="connections held in the idle group (default: fd limit - 1000)")
    parser.add_argument("--profile", action="store_true", help="py-spy our server instead of comparing peers")
    parser.add_argument(
        "--profile-scenarios", default="fanout,unicast-max", help="scenarios to profile (fanout,unicast-max,idle)"
    )
    parser.add_argument(
        "--baseline",
        help="also run these revisions of our server (comma-separated, e.g. main,4136dd3; HEAD is the last commit, "
        "not the working tree) as peers ours@<hash>, from exports in a temporary directory",
    )
    parser.add_argument("--verbose", action="store_true", help="show the generator's progress")
    parser.add_argument("--results", default=RESULTS, help="directory for the JSON report (default bench/results)")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness for the servers and the generator (default -10, when allowed; 0 to leave it)",
    )
    args = parser.parse_args(argv)

    limit = raiseFdLimit()
    os.makedirs(args.results, exist_ok=True)
    os.sched_setaffinity(0, {LOADGEN_CPU})
    niceness = raisePriority(args.nice)
    build()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.profile:
        profile(10.0, stamp, tuple(args.profile_scenarios.split(",")), args.results)
        return 0

    known = allPeers()
    names = args.peers.split(",") if args.peers else list(QUICK_PEERS if args.quick else DEFAULT_PEERS)
    trees = tempfile.mkdtemp(prefix="realtime-bench-builds-")
    try:
        for revision in args.baseline.split(",") if args.baseline else []:
            name, tree = checkout(revision, trees)
            known[name] = Ours(name, tree)
            names.insert(names.index("ours") + 1 if "ours" in names else 0, name)
            # and its two nodes on Redis, which the scale-out groups run
            # beside this checkout's (their before/after rows)
            redisName = name.replace("ours@", "ours-redis@")
            known[redisName] = OursOnRedis(redisName, root=tree)
            names.append(redisName)
        return compare(args, known, names, limit, niceness, stamp)
    finally:
        shutil.rmtree(trees, ignore_errors=True)


def compare(
    args: argparse.Namespace, known: dict[str, Peer], names: list[str], limit: int, niceness: int, stamp: str
) -> int:
    """
    Run every group on every peer, interleaved, round after round; print
    the table and write the report.
    """
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    timing = (
        ["--warmup", "1", "--duration", "2", "--hold", "2"]
        if quick
        else ["--warmup", "2", "--duration", "5", "--hold", "3"]
    )
    capacity = args.capacity or min(limit - 1000, 19000)
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown peer {name}; known: {', '.join(known)}")
    wanted = [
        g.replace("scaleout", ",".join(SCALEOUT_GROUPS)) for g in (args.groups or ",".join(DEFAULT_GROUPS)).split(",")
    ]
    groups = [g for g in plan(quick, capacity) if g.name in ",".join(wanted).split(",")]
    unknown = set(",".join(wanted).split(",")) - {g.name for g in plan(quick, capacity)}
    if unknown:
        raise SystemExit(
            f"unknown group {', '.join(sorted(unknown))}; known: {', '.join(g.name for g in plan(quick, capacity))}, scaleout"
        )
    skipped: dict[str, str] = {}
    schedule: list[tuple[Group, list[Peer]]] = []
    for group in groups:
        chosen = []
        for name in group.chosen(known, names, bool(args.peers)):
            if name == "node-ioredis":
                installNodePeer(NODE_REDIS_PEER, "ioredis")
            why = skipped.get(name) or known[name].available()
            if why:
                if name not in skipped:
                    print(f"skipping {name}: {why}", file=sys.stderr)
                skipped[name] = why
            else:
                chosen.append(known[name])
        schedule.append((group, chosen))

    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    for roundNo in range(1, rounds + 1):
        for group, peers in schedule:
            for peer in peers:
                print(
                    f"[{time.monotonic() - began:6.0f}s] round {roundNo}/{rounds} {group.name:9} {peer.name}",
                    flush=True,
                )
                report = runGroup(peer, group, timing, args.verbose)
                runs.append({"round": roundNo, "group": group.name, "peer": peer.name, "report": report})
                if report["problems"]:
                    print(f"    INVALID: {'; '.join(report['problems'])}", flush=True)

    peerNames = list(dict.fromkeys(p.name for group, peers in schedule if not group.peers for p in peers))
    summary = summarize(runs, peerNames)
    comparisons = compared(runs)
    parts = [table(summary, peerNames, runs) if peerNames else "", comparisonTable(comparisons)]
    if peerNames:
        parts.append(generatorEvidence(runs))
    text = "\n\n".join(part for part in parts if part)
    if not peerNames:
        text += "\n\n" + loadLine(runs)
    print()
    print(text)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "meta": {
            "date": stamp,
            "commit": commit,
            "mode": "quick" if quick else "full",
            "rounds": rounds,
            "timing": timing,
            "capacityConnections": capacity,
            "fdLimit": limit,
            "cpus": os.cpu_count(),
            "serverCpu": SERVER_CPU,
            "niceness": niceness,
            "loadgenCpu": LOADGEN_CPU,
            "seconds": round(time.monotonic() - began, 1),
            "builds": {name: BUILDS[name] for name in peerNames if name in BUILDS},
        },
        **summary,
        "comparisons": comparisons,
        "table": text,
        "runs": runs,
    }
    path = os.path.join(args.results, f"bench-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {os.path.relpath(path, ROOT)} ({result['meta']['seconds']:.0f}s)")
    return 1 if not runs or any(run["report"]["problems"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
