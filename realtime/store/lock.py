"""
The lock that keeps a SQLite store to one server.
"""

from __future__ import annotations

import fcntl
from typing import IO


def lockStore(spec: str) -> IO[bytes] | None:
    """
    Hold C{PATH.lock} of a C{sqlite:PATH} store for as long as the returned
    file is open, or stop the start if another server holds it.

    Two servers on one SQLite file would each drain the same offline queues
    and keep their own view of who was seen: nothing fails, pushes just go
    astray.  SQLite's own locks are per transaction, so they cannot say
    this; an advisory C{flock} on a file beside it can, and the kernel
    releases it when the process ends, however it ends.  Taken when the
    service is built, before twistd forks into the background: the daemon
    inherits the open file and with it the lock.
    """
    if not spec.startswith("sqlite:"):
        return None
    path = spec[len("sqlite:") :]
    lockPath = path + ".lock"
    try:
        holder = open(lockPath, "ab")
    except OSError as e:
        raise SystemExit(f"twistd realtime: --store {spec}: cannot open {lockPath}: {e.strerror}") from None
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder.close()
        raise SystemExit(
            f"twistd realtime: {path} is in use by another realtime server (it holds {lockPath}): "
            "give this one its own --store (sqlite:OTHER.sqlite3, or memory) or its own directory"
        ) from None
    return holder
