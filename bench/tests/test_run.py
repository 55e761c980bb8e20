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
from typing import Callable

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
