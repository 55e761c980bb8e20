"""
The soak (``bench/soak.py``) run small and short, so it cannot rot: a few
dozen clients for a few seconds, every attacker included, every message
accounted for.  ``pyproject.toml`` lists this file among the test paths, so
the README's test command runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOAK = os.path.join(os.path.dirname(HERE), "soak.py")


def test_shortSoak() -> None:
    """
    No error, no message lost or duplicated, every attack answered as
    documented, the server's memory flat.
    """
    command = [sys.executable, SOAK, "--json", "--clients", "40", "--duration", "6", "--lifetime", "1", "4"]
    command += ["--publish-every", "1", "--line-rate", "100", "--http-rate", "20"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["ok"], json.dumps(report, indent=1)
    assert report["lost"] == 0 and report["duplicates"] == 0
    assert report["messagesReceived"] > 100, report
    assert report["counts"]["connections"] > 40, report
    for kind in ("oversized", "fragments"):
        assert report["hostile"][kind].get("1009"), report["hostile"]
    assert report["rssMb"]["peak"] - report["rssMb"]["fresh"] < 50, report["rssMb"]
