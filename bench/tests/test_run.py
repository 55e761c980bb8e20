"""
The runner itself, end to end: C{bench/run.py} builds everything, installs
the Node peer, runs the smallest group against our server and Node ``ws``,
checks every message and writes its report.  A few seconds, on every test
run, so the one-command benchmark the README gives cannot rot unnoticed.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any, Callable

import pytest

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickFanout(requireTools: Callable[..., None], tmp_path: str) -> None:
    """
    C{run.py --quick} on the 1,000-connection fan-out group exits 0 (no
    invalid run), and its report has a figure for both peers and their ratio.
    """
    requireTools("gcc", "make", "taskset", "node", "npm")
    command = [
        sys.executable, os.path.join(BENCH, "run.py"),
        "--quick", "--groups", "fanout-1k", "--peers", "ours,node-ws",
        "--nice", "0", "--results", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [path] = glob.glob(os.path.join(str(tmp_path), "bench-*.json"))
    with open(path) as f:
        report = json.load(f)
    assert [(run["peer"], run["report"]["problems"]) for run in report["runs"]] == [("ours", []), ("node-ws", [])]
    for peer in ("ours", "node-ws"):
        assert report["medians"][peer]["fanout1k"] > 0, report["medians"]
    assert report["ratios"]["fanout1k"] > 0
    assert "broadcast fan-out, 1,000 conns" in result.stdout


def test_checkoutExportsARevision(tmp_path: str) -> None:
    """
    C{--baseline REV} runs a build exported from git: the tree has the
    server and the harness that starts it, and the peer is named after
    the commit.
    """
    sys.path.insert(0, os.path.dirname(BENCH))
    from bench.run import ROOT, Ours, checkout

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    name, tree = checkout("HEAD", str(tmp_path))
    assert name == f"ours@{head.stdout.strip()}"
    assert os.path.exists(os.path.join(tree, "realtime", "tap.py"))
    peer = Ours(name, tree)
    assert peer.available() is None
    assert peer.harness().__module__ != "tests.serverprocess"
    with pytest.raises(SystemExit):
        checkout("no-such-revision", str(tmp_path))


def fakeRun(peer: str, rate: float, roundNo: int = 1) -> dict[str, Any]:
    """
    A valid run of the fan-out group at C{rate} deliveries/s.
    """
    report = {"scenarios": {"fanout": {"deliveriesPerSec": rate}}, "problems": [], "otherLoad": 0.0}
    return {"round": roundNo, "group": "fanout-1k", "peer": peer, "report": report}


def test_tableComparesBuilds() -> None:
    """
    With another build of ours in the run, the table gives its ratio
    against Node next to ours', and ours against it (after / before).
    """
    sys.path.insert(0, os.path.dirname(BENCH))
    from bench.run import summarize, table

    peers = ["ours", "ours@abc1234", "node-ws"]
    runs = [fakeRun("ours", 300.0), fakeRun("ours@abc1234", 200.0), fakeRun("node-ws", 100.0)]
    summary = summarize(runs, peers)
    assert summary["ratios"]["fanout1k"] == 3.0
    assert summary["peerRatios"]["ours@abc1234"]["fanout1k"] == 2.0
    assert summary["versusBuilds"]["ours@abc1234"]["fanout1k"] == 1.5
    text = table(summary, peers, runs)
    header, rule, row = text.splitlines()[:3]
    assert header.split()[-5:] == ["ours/node", "@abc1234/node", "ours/@abc1234", "target", "met"]
    assert row.split()[-6:] == ["3.00x", "2.00x", "1.50x", ">=", "2.0x", "yes"]
    assert "unicast" not in text, "rows without any figure are left out"
