"""
JSON logs: one JSON object per line, for log shippers (Loki, Elasticsearch,
journald's JSON mode) that should not parse prose.

Every line has ``time`` (ISO 8601, UTC), ``level``, ``namespace`` (the
module that logged), ``system`` and ``text`` (the message as the text log
would show it), then the event's own fields (``uid``, ``session``,
``option``, ...) as values, and ``traceback`` for a logged failure.

Two ways to turn it on:

- ``twistd -n realtime --log-format json``: the server sets its observer
  as the application's C{ILogObserver} component, which twistd uses unless
  it was given ``--logger``; the lines go where twistd's text log would
  (stdout with ``-n``, else ``--logfile``, default ``twistd.log``).
- ``twistd -n --logger realtime.ops.logs.jsonLogObserver realtime``: twistd's
  own hook for any application; the lines go to stdout.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any, Mapping

from twisted.logger import ILogObserver, LogEvent, formatEvent
from twisted.python.logfile import LogFile
from zope.interface import implementer

#: event keys that are Twisted's bookkeeping, not the event's own fields
_INTERNAL = ("log_", "format", "message", "isError", "system", "time", "why", "failure")


def _value(value: Any) -> Any:
    """
    C{value} if JSON can hold it as it is, else its C{repr}.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return repr(value)


def eventAsLine(event: LogEvent) -> str:
    """
    One event as one line of JSON (without the newline).
    """
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(timespec="milliseconds"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "system": event.get("log_system", "-"),
        "text": formatEvent(event) or "",
    }
    for key, value in event.items():
        if not key.startswith(_INTERNAL) and key not in record:
            record[key] = _value(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:  # a broken failure must not lose the line
            record["traceback"] = repr(failure)
    return json.dumps(record, ensure_ascii=False, default=repr)


@implementer(ILogObserver)
class JsonLogObserver:
    """
    Writes each event as a line of JSON to C{out}, flushing after each so
    a shipper reading a pipe sees it at once.
    """

    def __init__(self, out: IO[str] | LogFile) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        """
        Write one event.
        """
        self.out.write(eventAsLine(event) + "\n")
        self.out.flush()


def jsonLogObserver() -> JsonLogObserver:
    """
    For ``twistd --logger realtime.ops.logs.jsonLogObserver``: JSON to stdout.
    """
    return JsonLogObserver(sys.stdout)


def observerFor(twistdOptions: Mapping[str, Any] | None) -> JsonLogObserver:
    """
    A JSON observer writing where twistd's text log would: stdout for
    ``--logfile -`` or ``-n`` without ``--logfile``, else the log file
    (``twistd.log`` by default), rotated as twistd rotates it.
    """
    options = twistdOptions or {"nodaemon": True}
    name = options.get("logfile") or ""
    if name == "-" or (options.get("nodaemon") and not name):
        return JsonLogObserver(sys.stdout)
    return JsonLogObserver(LogFile.fromFullPath(name or "twistd.log"))
