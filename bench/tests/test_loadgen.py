"""
The load generator is only trustworthy if it parses every frame shape a
server may send and if its checks fail when a server misbehaves.  These
tests prove both against real servers: ours (7-, 16- and 64-bit frame
lengths) and a peer that fragments, reorders, drops or corrupts on purpose.

Part of the test suite (``pyproject.toml``'s testpaths); alone:
``.venv/bin/python -m pytest bench/tests`` (needs gcc, make and taskset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable, Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/ is not a package of the distribution; import the runner by path
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from bench.run import API_KEY, LOADGEN, ROOT, CommandPeer, Ours  # noqa: E402
from bench.servers import Running  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def built(requireTools: Callable[..., None]) -> None:
    """
    Build the generator once.
    """
    requireTools("gcc", "make", "taskset")
    subprocess.run(["make", "-s", "-C", os.path.dirname(LOADGEN)], check=True)


def generate(running: Running, *args: str) -> dict[str, Any]:
    """
    Run the generator against C{running} and return its report.
    """
    command = [
        LOADGEN,
        "--port", str(running.wsPort),
        "--push-port", str(running.pushPort),
        "--stats-port", str(running.statsPort),
        "--key", API_KEY,
        "--warmup", "0.2",
        "--duration", "1",
        "--drain-timeout", "3",
        *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout)


def test_selftest() -> None:
    """
    The frame reader, SHA-1/base64 and the line codec pass their own checks.
    """
    result = subprocess.run([LOADGEN, "--selftest"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout


@pytest.fixture
def ours() -> Iterator[Running]:
    """
    Our server, as the benchmark starts it.
    """
    running = Ours().start()
    yield running
    running.stop()


@pytest.mark.parametrize("size", [64, 300, 70000])
def test_oursEveryLength(ours: Running, size: int) -> None:
    """
    Messages with 7-, 16- and 64-bit frame lengths arrive intact and in
    order, for broadcasts and unicasts.
    """
    report = generate(ours, "-n", "50", "--size", str(size), "--scenarios", "fanout,unicast-rate", "--rate", "500")
    checks = report["checks"]
    assert checks["orderErrors"] == checks["corrupt"] == checks["foreign"] == 0, checks
    assert checks["error"] == "", checks
    for name in ("fanout", "unicast-rate"):
        scenario = report["scenarios"][name]
        assert scenario["lost"] == 0 and scenario["drained"], scenario
        assert scenario["deliveriesPerSec"] > 0
    assert report["scenarios"]["unicast-rate"]["latencyMs"]["count"] > 100


def faulty(mode: str) -> Running:
    """
    Start the faulty peer in C{mode}.
    """
    return CommandPeer(f"faulty-{mode}", [sys.executable, "faultypeer.py", "--mode", mode], HERE, []).start()


@pytest.fixture(params=["fragment", "reorder", "drop", "corrupt"])
def misbehaving(request: pytest.FixtureRequest) -> Iterator[tuple[str, Running]]:
    """
    The faulty peer in each of its modes.
    """
    running = faulty(request.param)
    yield request.param, running
    running.stop()


def test_checksAreReal(misbehaving: tuple[str, Running]) -> None:
    """
    Fragmented messages pass; reordered, dropped or corrupted ones are caught,
    both in fan-out and in unicast.
    """
    mode, running = misbehaving
    # a peer that loses messages never drains: wait 1 s for them, not 3
    drain = ["--drain-timeout", "1"] if mode in ("reorder", "drop") else []
    for scenario in ("fanout", "unicast-rate"):
        report = generate(running, "-n", "10", "--scenarios", scenario, "--rate", "200", "--window", "4", *drain)
        checks = report["checks"]
        result = report["scenarios"][scenario]
        if mode == "fragment":
            assert checks["orderErrors"] == checks["corrupt"] == 0 and result["lost"] == 0, report
            assert result["deliveriesPerSec"] > 0
        elif mode == "reorder":
            assert checks["orderErrors"] > 0, report
        elif mode == "drop":
            assert result["lost"] > 0 or checks["gaps"] > 0, report
        elif mode == "corrupt":
            assert checks["corrupt"] > 0, report


def test_importable() -> None:
    """
    The runner is importable without side effects beyond sys.path.
    """
    assert os.path.isdir(ROOT)
