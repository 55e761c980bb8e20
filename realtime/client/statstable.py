"""
``realtime-push stats`` as a person reads it: the server's counters in a
two-column table, grouped, with words for names and units for times.

Standard library only, like C{realtime.client.cli}, which prints it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: keys whose value is seconds
SECONDS = ("uptime", "reactorLag")
#: shown instead of a camelCase split
LABELS = {
    "httpApi": "HTTP API",
    "linePort": "line port",
    "brokerUp": "broker up",
    "route": "routing",
}


def label(key: str) -> str:
    """
    A counter's name in words: C{"sessionsOpened"} -> C{"sessions opened"}.
    """
    if key in LABELS:
        return LABELS[key]
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", key).lower()


def value(key: str, raw: Any) -> str:
    """
    A value as text: booleans as yes/no, seconds with their unit.
    """
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if key in SECONDS and isinstance(raw, (int, float)):
        return f"{raw:.3f} s" if raw < 60 else f"{raw:.0f} s"
    return str(raw)


def formatStats(stats: Mapping[str, Any]) -> str:
    """
    The table: one row per counter, a section per group (auth failures by
    reason, the line port's counters, ...) with its rows indented.
    """
    rows: list[tuple[str, str]] = []
    for key, raw in stats.items():
        if isinstance(raw, Mapping):
            rows.append((label(key), "" if raw else "none"))
            rows.extend(("  " + str(inner if key == "authFailures" else label(inner)), value(inner, v))
                        for inner, v in raw.items())  # fmt: skip
        else:
            rows.append((label(key), value(key, raw)))
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {text}".rstrip() for name, text in rows)
