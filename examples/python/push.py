"""
Push from a Python backend (Django view, Celery task, cron job) with the
bundled client: standard library only, no Twisted needed.

    python examples/python/push.py [uid]

pushes ``{"percent": "88%"}`` to C{uid} (default ``uid1``) once through the
HTTP API and once through the line port, and prints what each answered
(``ok`` when a connection got it).  Set C{REALTIME_API_URL},
C{REALTIME_API_KEY} (else ``./realtime-api.key``) and C{REALTIME_LINE}
(``host:port``) for a server not on its defaults.
"""

from __future__ import annotations

import os
import sys

from realtime.client import HttpPushClient, LinePushClient, findApiKey


def main(uid: str) -> int:
    """
    Push twice and print the answers; exit 0 if both were delivered.
    """
    key = findApiKey(os.environ, os.getcwd())
    if not key:
        print("no API key: set REALTIME_API_KEY or run where realtime-api.key is", file=sys.stderr)
        return 2
    url = os.environ.get("REALTIME_API_URL", "http://127.0.0.1:8081")
    with HttpPushClient(url, apiKey=key) as api:
        answer = api.push(uid, {"percent": "88%"})
    print("http:", "ok" if answer["status"] == "delivered" else answer["status"], answer)

    host, _, port = os.environ.get("REALTIME_LINE", "127.0.0.1:5678").rpartition(":")
    with LinePushClient(host, int(port)) as line:
        delivered = line.push(uid, {"percent": "88%"})
    print("line:", "ok" if delivered else "fail")
    return 0 if answer["status"] == "delivered" and delivered else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "uid1"))
