"""
Push from a Python backend (Django view, Celery task, cron job) with the
bundled client: standard library only, no Twisted needed.

usage: push.py [UID]

Pushes ``{"percent": "88%"}`` to UID (default ``uid1``) once through the
HTTP API and once through the line port, and prints what each answered:
``ok`` when a connection got it, ``queued`` when the uid has no connection
and the push waits in its offline queue, else what the server said.  Exits
0 when both were delivered or queued, 1 otherwise, 2 on a usage error.

The environment names the server when it is not on its defaults:

  REALTIME_API_URL   the HTTP API (default http://127.0.0.1:8081)
  REALTIME_API_KEY   its key (default: the file ./realtime-api.key)
  REALTIME_LINE      the line port, host:port (default 127.0.0.1:5678)
"""

from __future__ import annotations

import os
import sys

from realtime.client import HttpPushClient, LinePushClient, findApiKey


def main(uid: str) -> int:
    """
    Push twice and print the answers; exit 0 if both were delivered or queued.
    """
    key = findApiKey(os.environ, os.getcwd())
    if not key:
        print("no API key: set REALTIME_API_KEY or run where realtime-api.key is", file=sys.stderr)
        return 2
    url = os.environ.get("REALTIME_API_URL", "http://127.0.0.1:8081")
    with HttpPushClient(url, apiKey=key) as api:
        answer = api.push(uid, {"percent": "88%"})
    status = answer["status"]
    print("http:", "ok" if status == "delivered" else status, answer)

    host, _, port = os.environ.get("REALTIME_LINE", "127.0.0.1:5678").rpartition(":")
    with LinePushClient(host, int(port)) as line:
        word = line.push(uid, {"percent": "88%"})
    print("line:", word)
    accepted = status in ("delivered", "queued") and (word.delivered or word.queued)
    return 0 if accepted else 1


def run(argv: list[str]) -> int:
    """
    The command line: C{--help}, or at most one uid.
    """
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip().split("\n\n", 1)[1])
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: push.py [UID]   (push.py --help says more)", file=sys.stderr)
        return 2
    return main(argv[0] if argv else "uid1")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
