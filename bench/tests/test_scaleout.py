"""
The scale-out benchmarks' pieces, end to end but small: two real nodes of
ours and of the Node C{ws} + C{ioredis} peer on a real C{redis-server},
driven by the generator over both nodes' ports, every message checked; the
asyncio build of ours; and the comparisons table.  About 20 s.

They skip without gcc, make, taskset, node, npm or redis-server, and fail
instead when C{REALTIME_REQUIRE_BENCH} (or, for Redis, C{REALTIME_REQUIRE_REDIS})
is set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from bench.run import LOADGEN, NODE_REDIS_PEER, Group, allPeers, installNodePeer, plan, runGroup, summarize  # noqa: E402
from bench.scaleout import NodeOnRedis, OursOnRedis, compared, comparisonTable  # noqa: E402
from bench.servers import Ours, Running  # noqa: E402
from tests.redisserver import requireRedis  # noqa: E402

TIMING = ["--warmup", "0.3", "--duration", "1", "--hold", "1"]
TINY = Group("tiny", 200, "fanout,unicast-max", ["--drain-timeout", "10"])


def prepare(requireTools: Callable[..., None]) -> None:
    requireTools("gcc", "make", "taskset", "node", "npm", "redis-server")
    requireRedis()
    subprocess.run(["make", "-s", "-C", os.path.dirname(LOADGEN)], check=True)


def localConnections(port: int) -> int:
    """
    The sessions one node of ours holds itself (C{/metrics}, not the
    cluster-wide C{/api/stats}).
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^realtime_connections (\d+)", text, re.M)
    return int(float(match.group(1))) if match else -1


class Watched(OursOnRedis):
    """
    Two nodes of ours whose second node's own session count is watched
    while the generator runs.
    """

    seen = 0

    def start(self) -> Running:
        running = super().start()
        second = running.allPorts()[1]

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.seen < TINY.connections // 2:
                try:
                    self.seen = max(self.seen, localConnections(second))
                except OSError:
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        return running


def checkScenarios(report: dict[str, Any], helper: bool) -> None:
    assert report["problems"] == [], report["problems"]
    for name in ("fanout", "unicast-max"):
        scenario = report["scenarios"][name]
        assert scenario["deliveriesPerSec"] > 0, scenario
        assert scenario["serverCpu"] >= 0, scenario
        assert ("auxCpu" in scenario) == helper, scenario
        if helper:
            assert scenario["auxCpu"] >= 0, scenario


def test_oursOnTwoNodes(requireTools: Callable[..., None]) -> None:
    """
    Two nodes of ours on one Redis: the generator's connections are split
    over both (the second holds half of them itself), broadcasts pushed into
    the first reach all of them, pushes to random uids reach the right ones,
    and both servers' CPU and redis-server's are measured.
    """
    prepare(requireTools)
    peer = Watched("ours-redis")
    report = runGroup(peer, TINY, TIMING, False)
    checkScenarios(report, helper=True)
    assert peer.seen == TINY.connections // 2
    assert report["serverAffinity"] == [0]


def test_workers(requireTools: Callable[..., None]) -> None:
    """
    C{--workers 2}: the CPU measured is the parent's and both workers', and
    the checks pass over the connections the workers share.
    """
    prepare(requireTools)
    report = runGroup(allPeers()["ours-workers2"], TINY, TIMING, False)
    checkScenarios(report, helper=True)
    assert len(report["serverPids"]) == 3, report["serverPids"]
    assert report["serverAffinity"] == [0, 1]


def test_nodeOnTwoNodes(requireTools: Callable[..., None]) -> None:
    """
    The Node C{ws} + C{ioredis} peer passes the same checks on two processes.
    """
    prepare(requireTools)
    installNodePeer(NODE_REDIS_PEER, "ioredis")
    report = runGroup(NodeOnRedis(), TINY, TIMING, False)
    checkScenarios(report, helper=True)


class Inspected(Ours):
    """
    Our server, whose command line is read once it runs.
    """

    argv: list[str] = []

    def start(self) -> Running:
        running = super().start()
        with open(f"/proc/{running.pid}/cmdline") as f:
            self.argv = f.read().split("\0")
        return running


def test_oursOnAsyncio(requireTools: Callable[..., None]) -> None:
    """
    C{ours-asyncio} runs twistd on Twisted's asyncio reactor, and passes the
    checks like C{ours}.
    """
    prepare(requireTools)
    named = allPeers()["ours-asyncio"]
    assert isinstance(named, Ours) and named.reactor == "asyncio"
    peer = Inspected("ours-asyncio", reactor=named.reactor)
    checkScenarios(runGroup(peer, TINY, TIMING, False), helper=False)
    assert peer.argv[peer.argv.index("-r") + 1 : peer.argv.index("realtime")] == ["asyncio", "-n", "--pidfile="]


def fake(peer: str, group: str, scenario: str, rate: float, cpu: float, aux: float | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {"deliveriesPerSec": rate, "serverCpu": cpu}
    if aux is not None:
        figures["auxCpu"] = aux
    report = {"scenarios": {scenario: figures}, "problems": [], "otherLoad": 0.0}
    return {"round": 1, "group": group, "peer": peer, "report": report}


def test_comparisons() -> None:
    """
    The comparisons take CPU seconds per million deliveries from each run's
    cores and rate, give the memory broker no redis-server time in the
    total, and judge the targets: CPU per delivery at most 1.15x the memory
    broker's, unicast pushes/s at least Node's.
    """
    runs = [
        fake("ours", "redis-fanout-10k", "fanout", 1_000_000, 0.5),
        fake("ours-redis", "redis-fanout-10k", "fanout", 800_000, 0.44, 0.04),
        fake("ours-redis", "redis-unicast", "unicast-max", 30_000, 0.9, 0.1),
        fake("node-ioredis", "redis-unicast", "unicast-max", 20_000, 0.9, 0.1),
    ]
    rows = {(r["group"], r["label"].strip()): r for r in compared(runs)}
    cpu = rows[("redis-fanout-10k", "server CPU s / million deliveries (both nodes)")]
    assert cpu["medians"] == [0.55, 0.5] and round(cpu["ratio"], 2) == 1.1 and cpu["met"] is True
    total = rows[("redis-fanout-10k", "servers + redis-server")]
    assert [round(v, 2) for v in total["medians"]] == [0.6, 0.5] and total["met"] is None
    assert rows[("redis-fanout-10k", "redis-server CPU s / million deliveries")]["medians"] == [0.05, None]
    unicast = rows[("redis-unicast", "push to random uids over 2 nodes, 10,000 conns, pushes/s")]
    assert unicast["ratio"] == 1.5 and unicast["met"] is True
    assert not any(group == "workers" for group, _ in rows), "rows without any figure are left out"
    text = comparisonTable(list(rows.values()))
    assert "ours-redis / node-ioredis" in text and "<= 1.15x" in text
    assert summarize(runs, ["ours"])["medians"]["ours"]["fanout10k"] is None, "scale-out groups stay out of the table"


def test_hopAndSplit() -> None:
    """
    The fan-out ratio against the memory broker is split in two rows of
    real runs whose product it is: one node on Redis against the memory
    broker (the hop), and two nodes against one (the split).
    """
    runs = [
        fake("ours", "redis-fanout-1k", "fanout-pipelined", 1_000_000, 0.8),
        fake("ours-redis1", "redis-fanout-1k", "fanout-pipelined", 1_000_000, 0.84),
        fake("ours-redis", "redis-fanout-1k", "fanout-pipelined", 800_000, 0.84),
    ]
    rows = {r["label"].strip(): r for r in compared(runs)}
    both = rows["server CPU s / million deliveries (both nodes)"]["ratio"]
    hop = rows["of which the Redis hop (1 node on Redis / memory broker)"]
    split = rows["and the split (2 nodes / 1 node, both on Redis)"]
    assert (hop["peers"], split["peers"]) == (["ours-redis1", "ours"], ["ours-redis", "ours-redis1"])
    assert round(hop["ratio"], 2) == 1.05 and round(split["ratio"], 2) == 1.25
    assert round(hop["ratio"] * split["ratio"], 6) == round(both, 6)
    assert hop["met"] is None and split["met"] is None


def test_groupsChoosePeers() -> None:
    """
    Without C{--peers} a scale-out group runs its own peers; with it, the
    ones it names that the group takes; single-process groups never run a
    peer of several processes.
    """
    known = allPeers()
    groups = {g.name: g for g in plan(True, 1000)}
    assert groups["redis-unicast"].chosen(known, ["ours"], False) == ["ours-redis", "node-ioredis"]
    assert groups["redis-unicast"].chosen(known, ["ours-redis", "ours", "c-batched"], True) == ["ours-redis", "ours"]
    assert groups["fanout-1k"].chosen(known, ["ours", "ours-asyncio", "ours-redis"], True) == ["ours", "ours-asyncio"]


def test_baselineBuildOnRedis() -> None:
    """
    C{--baseline REV} adds that build's two nodes (C{ours-redis@<hash>}):
    the scale-out groups of this checkout's nodes run it too, the
    single-process ones never, and the comparisons gain its before/after
    rows.
    """
    known = {**allPeers(), "ours@abc1234": Ours("ours@abc1234"), "ours-redis@abc1234": OursOnRedis("ours-redis@abc1234")}
    groups = {g.name: g for g in plan(True, 1000)}
    names = ["ours", "ours@abc1234", "ours-redis@abc1234"]
    assert groups["redis-unicast"].chosen(known, names, False) == ["ours-redis", "node-ioredis", "ours-redis@abc1234"]
    assert groups["redis-fanout-1k"].chosen(known, ["ours", "ours-redis", "ours-redis@abc1234"], True) == [
        "ours",
        "ours-redis",
        "ours-redis@abc1234",
    ]
    assert groups["workers"].chosen(known, names, False) == ["ours-workers1", "ours-workers2"]
    assert groups["fanout-1k"].chosen(known, names, False) == ["ours", "ours@abc1234"]
    runs = [
        fake("ours-redis", "redis-unicast", "unicast-max", 30_000, 0.9, 0.1),
        fake("ours-redis@abc1234", "redis-unicast", "unicast-max", 10_000, 0.9, 0.1),
    ]
    rows = {r["label"].strip(): r for r in compared(runs)}
    assert rows["push to random uids, pushes/s"]["peers"] == ["ours-redis", "ours-redis@abc1234"]
    assert rows["push to random uids, pushes/s"]["ratio"] == 3.0
    assert round(rows["push to random uids, CPU per push"]["ratio"], 2) == 0.33
