"""
C{bench/processcpu.py}: perf's counts read right, and one small real run
of two nodes of ours on a real C{redis-server} measured process by process.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from bench.processcpu import measure, perfCounts, show  # noqa: E402
from bench.tests.test_scaleout import prepare  # noqa: E402


def test_perfCounts() -> None:
    """
    Each counted event by its short name; what perf could not count (or a
    comment line) is left out.
    """
    output = (
        "# started on Wed Dec  2 13:00:00 2026\n"
        "\n"
        "5031,,syscalls:sys_enter_sendto,8001234,100.00,,\n"
        "<not supported>,,syscalls:sys_enter_sendmsg,0,100.00,,\n"
        "125,,context-switches,8001234,100.00,,\n"
    )
    assert perfCounts(output) == {"sendto": 5031, "context-switches": 125}


def test_twoNodes(requireTools: Callable[..., None]) -> None:
    """
    Both nodes and redis-server are measured, each with CPU per push.
    """
    prepare(requireTools)
    result = measure("ours-redis", "unicast-max", 200, window=1.0, warmup=0.3, settle=0.5)
    assert result["rate"] > 0
    assert [row["process"] for row in result["processes"]] == ["server 0", "server 1", "redis-server"]
    for row in result["processes"]:
        assert row["userUs"] >= 0 and row["systemUs"] >= 0, row
    assert "server 1" in show(result)
