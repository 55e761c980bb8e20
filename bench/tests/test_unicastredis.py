"""
C{bench/unicastredis.py}: one small real run on a real C{redis-server},
every push answered C{ok} and delivered once (the script checks both).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.redisserver import requireRedis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smallRun() -> None:
    """
    The script prints this process's and redis-server's CPU per push.
    """
    requireRedis()
    script = os.path.join(ROOT, "bench", "unicastredis.py")
    done = subprocess.run(
        [sys.executable, script, "--uids", "50", "--pushes", "512", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    found = re.fullmatch(r"CPU us per push: server (\S+) \(median (\S+)\), redis-server (\S+)\n", done.stdout)
    assert found is not None, done.stdout
    best, median, redis = (float(x) for x in found.groups())
    # redis-server is read in clock ticks (10 ms): a small run may read none
    assert 0 < best <= median and redis >= 0
