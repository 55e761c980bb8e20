"""
The scale-out benchmarks (issue 12): servers of several processes sharing a
real C{redis-server}, and the same-run comparisons their targets are about.

Peers (each started fresh for every run, with its own Redis on a free port,
never 6379):

- C{ours-redis}: two C{twistd -n realtime --broker redis://...} processes;
  the generator spreads its connections over both and pushes into the first
  (node A), so a broadcast published on A reaches B's half through Redis.
- C{node-ioredis}: two processes of C{peers/node-ioredis} (Node C{ws} with
  C{ioredis} pub/sub, the same contract), the yardstick for unicast.
- C{ours-workers1}, C{ours-workers2}: one C{twistd} with C{--workers N} and
  the Redis broker.

The single-process comparisons of the same run come from C{run.py}'s peers:
C{ours} (the memory broker) and C{ours-asyncio} (the same server on
Twisted's asyncio reactor, C{twistd -r asyncio}).

The servers and Redis share the server core (CPU 0) with the generator on
CPU 1, as every other run, so CPU per delivery is comparable with the
single-process memory broker's: only the workers runs leave both cores to
the server, since a second worker can only gain what the generator leaves
of CPU 1 (bench/README.rst, The scale-out groups).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.servers import BENCH, LOADGEN_CPU, SERVER_CPU, CommandPeer, Ours, Peer, Running, pinnedTo, stopProcess

NODE_REDIS_PEER = os.path.join(BENCH, "peers", "node-ioredis")


def startRedis(cpus: int | tuple[int, ...]) -> Any:
    """
    A fresh C{redis-server} (nothing on disk) on a free port, started by the
    tests' own helper, pinned to C{cpus}.
    """
    from tests.redisserver import RedisServer

    with pinnedTo(cpus):
        return RedisServer()


def descendants(pid: int) -> list[int]:
    """
    The processes below C{pid} (its workers, theirs...), from C{/proc}.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


class OursOnRedis(Peer):
    """
    Our server as C{nodes} processes on one Redis broker, or as one process
    with C{--workers workers} on the Redis broker and store (the store
    every worker shares; C{--workers} refuses the default SQLite file).
    """

    scaleout = True

    def __init__(
        self,
        name: str,
        nodes: int = 2,
        workers: int | None = None,
        cpus: int | tuple[int, ...] = SERVER_CPU,
        root: str | None = None,
    ) -> None:
        """
        @param root: the source tree to run (another revision's, for
            C{run.py --baseline}), or this checkout.
        """
        self.name = name
        self.root = root
        self.nodes = nodes
        self.workers = workers
        self.cpus = cpus

    def available(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (apt-get install redis-server)"
        return None

    def start(self) -> Running:
        redis = startRedis(self.cpus)
        more = ("--workers", str(self.workers), "--store", redis.url) if self.workers is not None else ()
        tree = {} if self.root is None else {"root": self.root}
        node = Ours(self.name, cpus=self.cpus, args=("--broker", redis.url, *more), **tree)
        servers: list[Any] = []

        def stop() -> None:
            for server in servers:
                server.stop()
            redis.cleanup()

        try:
            for _ in range(self.nodes):
                servers.append(node.launch())
            pids = [server.process.pid for server in servers]
            if self.workers is not None:
                pids += self.waitForWorkers(pids[0])
        except BaseException:
            stop()
            raise
        first = servers[0]
        return Running(
            self.name,
            pids[0],
            first.ports["port"],
            first.ports["push-port"],
            first.ports["api-port"],
            stop,
            sorted(os.sched_getaffinity(pids[0])),
            wsPorts=[server.ports["port"] for server in servers],
            pids=pids,
            auxPids=[redis.process.pid],
        )

    def waitForWorkers(self, parent: int, timeout: float = 30.0) -> list[int]:
        """
        The worker processes under C{parent} once there are C{workers} of
        them (the generator sums their CPU time with the parent's); none
        for C{--workers 1}, which is the single process.
        """
        assert self.workers is not None
        wanted = self.workers if self.workers > 1 else 0
        deadline = time.monotonic() + timeout
        while len(found := descendants(parent)) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {len(found)} of {wanted} workers started in {timeout:.0f} s")
            time.sleep(0.1)
        return found


class NodeOnRedis(Peer):
    """
    C{nodes} processes of the Node C{ws} + C{ioredis} peer on one Redis.
    """

    scaleout = True

    def __init__(self, name: str = "node-ioredis", nodes: int = 2) -> None:
        self.name = name
        self.nodes = nodes
        self.command = CommandPeer(
            name, ["node", "server.js"], NODE_REDIS_PEER, [os.path.join(NODE_REDIS_PEER, "node_modules", "ioredis")]
        )

    def available(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (apt-get install redis-server)"
        return self.command.available()

    def start(self) -> Running:
        redis = startRedis(SERVER_CPU)
        started: list[tuple[Any, int, int, int]] = []

        def stop() -> None:
            for process, *_ in started:
                stopProcess(process)
            redis.cleanup()

        try:
            for _ in range(self.nodes):
                started.append(self.command.launch("--redis", redis.url))
        except BaseException:
            stop()
            raise
        pids = [process.pid for process, *_ in started]
        _, ws, push, stats = started[0]
        return Running(
            self.name,
            pids[0],
            ws,
            push,
            stats,
            stop,
            sorted(os.sched_getaffinity(pids[0])),
            wsPorts=[port for _, port, _, _ in started],
            pids=pids,
            auxPids=[redis.process.pid],
        )


def scaleoutPeers() -> dict[str, Peer]:
    """
    The scale-out peers and the asyncio build of ours, by name.
    """
    both = (SERVER_CPU, LOADGEN_CPU)
    return {
        "ours-asyncio": Ours("ours-asyncio", reactor="asyncio"),
        "ours-redis": OursOnRedis("ours-redis"),
        # the whole audience on one node of the broker: the Redis hop
        # without the split over two processes
        "ours-redis1": OursOnRedis("ours-redis1", nodes=1),
        "node-ioredis": NodeOnRedis(),
        "ours-workers1": OursOnRedis("ours-workers1", nodes=1, workers=1, cpus=both),
        "ours-workers2": OursOnRedis("ours-workers2", nodes=1, workers=2, cpus=both),
    }


# -- the comparisons -----------------------------------------------------------


def _scenario(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    s = report.get("scenarios", {}).get(name)
    return s if isinstance(s, dict) else None


def rate(name: str) -> Callable[[dict[str, Any]], float | None]:
    """
    Deliveries per second in scenario C{name}.
    """

    def measure(report: dict[str, Any]) -> float | None:
        s = _scenario(report, name)
        return s["deliveriesPerSec"] if s and s.get("deliveriesPerSec", 0) > 0 else None

    return measure


def cpuPerMillion(name: str, key: str = "serverCpu") -> Callable[[dict[str, Any]], float | None]:
    """
    CPU seconds per million deliveries in scenario C{name}: of the server's
    processes (C{serverCpu}), of redis-server (C{auxCpu}) or both (C{all}).
    """

    def measure(report: dict[str, Any]) -> float | None:
        s = _scenario(report, name)
        if not s or s.get("deliveriesPerSec", 0) <= 0:
            return None
        # a server with no helper process (the memory broker) spends none there
        keys = ("serverCpu", "auxCpu") if key == "all" else (key,)
        cores = [s.get(k, 0 if k == "auxCpu" and key == "all" else -1) for k in keys]
        if any(c is None or c < 0 for c in cores):
            return None
        return 1e6 * sum(cores) / s["deliveriesPerSec"]

    return measure


def p99(name: str) -> Callable[[dict[str, Any]], float | None]:
    """
    The p99 push-to-receive latency in milliseconds in scenario C{name}.
    """

    def measure(report: dict[str, Any]) -> float | None:
        s = _scenario(report, name)
        value = s.get("latencyMs", {}).get("p99", -1) if s else -1
        return value if value >= 0 else None

    return measure


def connectRate(report: dict[str, Any]) -> float | None:
    value = report.get("connect", {}).get("registeredPerSec", -1)
    return value if value > 0 else None


@dataclass
class Comparison:
    """
    One row of the comparisons table: C{measure} of peer C{over[0]} against
    C{over[1]}'s, in C{group}'s runs of the same command.
    """

    label: str
    group: str
    measure: Callable[[dict[str, Any]], float | None]
    over: tuple[str, str]
    higherIsBetter: bool = True
    target: float | None = None
    unit: str = "/s"


def _fanoutRows(group: str, audience: str) -> list[Comparison]:
    rows = []
    for scenario, how in (("fanout", "windowed"), ("fanout-pipelined", "pipelined 50")):
        over = ("ours-redis", "ours")
        rows += [
            Comparison(f"2 nodes, {audience} conns, {how}: deliveries/s", group, rate(scenario), over),
            Comparison(
                "  server CPU s / million deliveries (both nodes)",
                group,
                cpuPerMillion(scenario),
                over,
                False,
                1.15,
                "s",
            ),
            Comparison(
                "  redis-server CPU s / million deliveries",
                group,
                cpuPerMillion(scenario, "auxCpu"),
                over,
                False,
                None,
                "s",
            ),  # fmt: skip
            Comparison("  servers + redis-server", group, cpuPerMillion(scenario, "all"), over, False, None, "s"),
            # the first row's ratio, as the product of these two
            *(
                Comparison(label, group, cpuPerMillion(scenario), pair, False, None, "s")
                for label, pair in (
                    ("  of which the Redis hop (1 node on Redis / memory broker)", ("ours-redis1", "ours")),
                    ("  and the split (2 nodes / 1 node, both on Redis)", ("ours-redis", "ours-redis1")),
                )
            ),
        ]
    return rows


COMPARISONS: list[Comparison] = [
    *_fanoutRows("redis-fanout-1k", "1,000"),
    *_fanoutRows("redis-fanout-10k", "10,000"),
    Comparison("push to random uids over 2 nodes, 10,000 conns, pushes/s", "redis-unicast", rate("unicast-max"),
               ("ours-redis", "node-ioredis"), True, 1.0),
    Comparison("  server CPU s / million pushes (both nodes)", "redis-unicast", cpuPerMillion("unicast-max"),
               ("ours-redis", "node-ioredis"), False, None, "s"),
    Comparison("  redis-server CPU s / million pushes", "redis-unicast", cpuPerMillion("unicast-max", "auxCpu"),
               ("ours-redis", "node-ioredis"), False, None, "s"),
    Comparison("  2,000 pushes/s, p99 latency ms", "redis-unicast", p99("unicast-rate"),
               ("ours-redis", "node-ioredis"), False, None, "ms"),
    Comparison("--workers 2 / 1, 10,000 conns, unicast deliveries/s", "workers", rate("unicast-max"),
               ("ours-workers2", "ours-workers1")),
    Comparison("  server CPU s / million pushes (all processes)", "workers", cpuPerMillion("unicast-max"),
               ("ours-workers2", "ours-workers1"), False, None, "s"),
    Comparison("--workers 2 / 1, 10,000 conns, fan-out deliveries/s", "workers", rate("fanout"),
               ("ours-workers2", "ours-workers1")),
    Comparison("  server CPU s / million deliveries (all processes)", "workers", cpuPerMillion("fanout"),
               ("ours-workers2", "ours-workers1"), False, None, "s"),
    *(
        Comparison(label if label.startswith(" ") else f"asyncio / epoll: {label}", group, measure,
                   ("ours-asyncio", "ours"), higher, None, unit)
        for label, group, measure, higher, unit in (
            ("fan-out 1,000 conns, deliveries/s", "fanout-1k", rate("fanout"), True, "/s"),
            ("  server CPU s / million deliveries", "fanout-1k", cpuPerMillion("fanout"), False, "s"),
            ("fan-out 10,000 conns, deliveries/s", "load-10k", rate("fanout"), True, "/s"),
            ("  server CPU s / million deliveries", "load-10k", cpuPerMillion("fanout"), False, "s"),
            ("  pipelined 50, deliveries/s", "load-10k", rate("fanout-pipelined"), True, "/s"),
            ("push to random uids, 10,000 conns, deliveries/s", "load-10k", rate("unicast-max"), True, "/s"),
            ("  server CPU s / million pushes", "load-10k", cpuPerMillion("unicast-max"), False, "s"),
            ("  2,000 pushes/s, p99 latency ms", "load-10k", p99("unicast-rate"), False, "ms"),
            ("connect rate, handshakes+auth/s", "load-10k", connectRate, True, "/s"),
        )
    ),
]  # fmt: skip


def beforeAfter(build: str) -> list[Comparison]:
    """
    The rows comparing this checkout's two nodes with C{build}'s
    (C{ours-redis@<hash>}, from C{run.py --baseline}): the same-run
    before/after of a change to the Redis path.
    """
    over = ("ours-redis", build)
    return [
        Comparison(f"this checkout / {build.partition('@')[2]}: 1,000 conns, windowed, CPU per delivery",
                   "redis-fanout-1k", cpuPerMillion("fanout"), over, False, None, "s"),
        Comparison("  1,000 conns, pipelined 50, CPU per delivery", "redis-fanout-1k",
                   cpuPerMillion("fanout-pipelined"), over, False, None, "s"),
        Comparison("  10,000 conns, windowed, CPU per delivery", "redis-fanout-10k", cpuPerMillion("fanout"),
                   over, False, None, "s"),
        Comparison("  10,000 conns, pipelined 50, CPU per delivery", "redis-fanout-10k",
                   cpuPerMillion("fanout-pipelined"), over, False, None, "s"),
        Comparison("  push to random uids, pushes/s", "redis-unicast", rate("unicast-max"), over),
        Comparison("  push to random uids, CPU per push", "redis-unicast", cpuPerMillion("unicast-max"), over,
                   False, None, "s"),
    ]  # fmt: skip


def compared(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    Every comparison with a figure for at least one of its peers: both
    medians over the valid runs, their ratio, and whether the target is met.
    """
    rows = []
    builds = sorted({run["peer"] for run in runs if run["peer"].startswith("ours-redis@")})
    for c in COMPARISONS + [row for build in builds for row in beforeAfter(build)]:
        medians: list[float | None] = []
        for peer in c.over:
            values = [
                v
                for run in runs
                if run["peer"] == peer and run["group"] == c.group and not run["report"]["problems"]
                for v in [c.measure(run["report"])]
                if v is not None
            ]
            medians.append(statistics.median(values) if values else None)
        if medians == [None, None]:
            continue
        a, b = medians
        ratio = a / b if a is not None and b else None
        met = None
        if c.target is not None and ratio is not None:
            met = ratio >= c.target if c.higherIsBetter else ratio <= c.target
        rows.append({"label": c.label, "group": c.group, "peers": list(c.over), "medians": medians,
                     "ratio": ratio, "target": c.target, "higherIsBetter": c.higherIsBetter, "met": met,
                     "unit": c.unit})  # fmt: skip
    return rows


def comparisonTable(rows: list[dict[str, Any]]) -> str:
    """
    The comparisons as a fixed-width table (empty when none ran).
    """
    if not rows:
        return ""

    def show(value: float | None, unit: str) -> str:
        if value is None:
            return "-"
        if unit == "/s":
            return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
        return f"{value:.2f}"

    table = [["same-run comparison (medians)", "A / B", "A", "B", "A/B", "target", "met"]]
    for r in rows:
        target = "-" if r["target"] is None else (">= " if r["higherIsBetter"] else "<= ") + f"{r['target']:.2f}x"
        table.append(
            [
                r["label"],
                " / ".join(r["peers"]),
                *(show(v, r["unit"]) for v in r["medians"]),
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
                target,
                "-" if r["met"] is None else ("yes" if r["met"] else "NO"),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("(CPU s / million = server CPU seconds per million deliveries = us per delivery)")
    return "\n".join(lines)
