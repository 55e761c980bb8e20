"""
The benchmark's tests need the tools the benchmark builds and runs with.
They skip without them, saying what to install, unless
C{REALTIME_REQUIRE_BENCH} is set (as ``.ci/run`` sets it): then they fail,
so CI cannot pass by skipping the harness.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable

import pytest

#: the Debian package that gives each tool
PACKAGES = {"gcc": "gcc", "make": "make", "taskset": "util-linux", "node": "nodejs", "npm": "npm"}


def missingTools(names: tuple[str, ...]) -> str | None:
    """
    Why the tools C{names} cannot run here, or C{None} if they can.
    """
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        packages = " ".join(sorted({PACKAGES.get(name, name) for name in missing}))
        return f"{', '.join(missing)} not found (apt-get install {packages})"
    if len(os.sched_getaffinity(0)) < 2:
        return "the benchmark pins the server and the generator to two different CPUs; only one is usable"
    return None


@pytest.fixture(scope="session")
def requireTools() -> Callable[..., None]:
    """
    Call with tool names: skips (or fails, with C{REALTIME_REQUIRE_BENCH})
    the test when one is missing.
    """

    def require(*names: str) -> None:
        problem = missingTools(names)
        if problem is None:
            return
        if os.environ.get("REALTIME_REQUIRE_BENCH"):
            pytest.fail(f"REALTIME_REQUIRE_BENCH is set but {problem}")
        pytest.skip(f"{problem}; set REALTIME_REQUIRE_BENCH to fail instead")

    return require
