"""
Where one scenario's CPU goes, process by process: user and system CPU per
push (or per delivery, for fan-out) of each server process and of
redis-server, and the system calls each server makes per thousand, counted
by C{perf stat} on the syscall tracepoints.

The suite's tables (C{run.py}) give the totals a target is judged on; this
says which process and which kind of work makes them, which a sampling
profiler cannot: on one shared core, py-spy counts the time a process
spends preempted inside C{send()} as its own.

    .venv/bin/python bench/processcpu.py --peer ours-redis --scenario unicast-max
    .venv/bin/python bench/processcpu.py --peer ours --scenario fanout -n 1000
    .venv/bin/python bench/processcpu.py --peer ours --scenario fanout-pipelined -n 1000 --beside 8

C{perf} is optional (the counts are left out without it, or when the kernel
refuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import allPeers, build, installNodePeer, startGenerator  # noqa: E402
from bench.scaleout import NODE_REDIS_PEER  # noqa: E402
from bench.servers import SERVER_CPU, processCpuTimes  # noqa: E402

#: the system calls counted, by their tracepoint's name
SYSCALLS = ("sendto", "sendmsg", "write", "writev", "recvfrom", "read", "epoll_wait", "epoll_pwait")


def countSyscalls(pids: list[int], seconds: float) -> list[subprocess.Popen[str]] | None:
    """
    Start one C{perf stat} per pid for C{seconds}, or C{None} without perf.
    """
    if shutil.which("perf") is None:
        return None
    events = ",".join([f"syscalls:sys_enter_{name}" for name in SYSCALLS] + ["context-switches"])
    return [
        subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", events, "-p", str(pid), "--", "sleep", str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in pids
    ]


def perfCounts(output: str) -> dict[str, int]:
    """
    C{perf stat -x ,}'s counts by event (without the tracepoint's prefix);
    an event perf could not count is left out.
    """
    counts = {}
    for line in output.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].isdigit():
            counts[fields[2].rpartition(":")[2].replace("sys_enter_", "")] = int(fields[0])
    return counts


#: a process that reads its C{argv[1]} megabytes at random, for ever
NEIGHBOUR = """
import array, random, sys
table = array.array("q", range(int(sys.argv[1]) * 131072))
where = [random.randrange(len(table)) for _ in range(100000)]
while True:
    total = sum(table[i] for i in where)
"""


def neighbour(megabytes: int) -> subprocess.Popen[bytes]:
    """
    A busy process on the server's core that keeps C{megabytes} in its
    caches: what a server pays for sharing its core with another process
    (as two nodes on one core do), measured on the single process.
    """
    command = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-c", NEIGHBOUR, str(megabytes)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def measure(
    peerName: str,
    scenario: str,
    connections: int,
    window: float,
    warmup: float = 2.0,
    settle: float = 3.0,
    beside: int | None = None,
) -> dict[str, Any]:
    """
    Run C{scenario} against C{peerName} and measure each process over
    C{window} seconds, C{settle} seconds after the generator's warm-up,
    with a L{neighbour} of C{beside} megabytes on the server's core.
    """
    peer = allPeers()[peerName]
    running = peer.start()
    busy = None if beside is None else neighbour(beside)
    try:
        servers, aux = running.allPids(), list(running.auxPids)
        generator = startGenerator(running, connections, scenario, warmup, settle + window + 3, "--drain-timeout", "30")
        time.sleep(settle)
        before, started = {pid: processCpuTimes(pid) for pid in servers + aux}, time.monotonic()
        counters = countSyscalls(servers, window)
        time.sleep(window)
        after, took = {pid: processCpuTimes(pid) for pid in servers + aux}, time.monotonic() - started
        counted = [perfCounts(c.communicate()[1]) for c in counters] if counters else [{} for _ in servers]
        out, _ = generator.communicate(timeout=120)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        running.stop()
    report = json.loads(out)["scenarios"][scenario]
    perSecond = report["deliveriesPerSec"] if scenario.startswith("fanout") else report["pushesPerSec"]
    processes = []
    for i, pid in enumerate(servers + aux):
        user, system = ((after[pid][k] - before[pid][k]) / took for k in (0, 1))
        row: dict[str, Any] = {
            "process": f"server {i}" if pid in servers else "redis-server",
            "userUs": 1e6 * user / perSecond,
            "systemUs": 1e6 * system / perSecond,
        }
        if pid in servers:
            row["perThousand"] = {k: 1000 * v / window / perSecond for k, v in counted[i].items()}
        processes.append(row)
    return {"peer": peerName, "scenario": scenario, "rate": perSecond, "processes": processes}


def show(result: dict[str, Any]) -> str:
    unit, units = ("delivery", "deliveries") if result["scenario"].startswith("fanout") else ("push", "pushes")
    lines = [f"{result['peer']}, {result['scenario']}: {result['rate']:,.0f} {units}/s; CPU us per {unit}:"]
    for row in result["processes"]:
        calls = "  ".join(f"{k} {v:.1f}" for k, v in row.get("perThousand", {}).items() if v >= 0.05)
        lines.append(
            f"  {row['process']:12s} user {row['userUs']:6.2f}  system {row['systemUs']:6.2f}"
            + (f"   per 1,000: {calls}" if calls else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", default="ours-redis", help="a peer of bench/run.py (ours-redis, node-ioredis, ours...)")
    parser.add_argument("--scenario", default="unicast-max", help="a load generator scenario")
    parser.add_argument("-n", type=int, default=10000, help="connections")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--beside", type=int, metavar="MB", help="a busy process reading MB megabytes on the server's core, meanwhile"
    )
    args = parser.parse_args(argv)
    build()
    if args.peer == "node-ioredis":
        installNodePeer(NODE_REDIS_PEER, "ioredis")
    result = measure(args.peer, args.scenario, args.n, args.window, beside=args.beside)
    print(json.dumps(result, indent=1) if args.json else show(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
