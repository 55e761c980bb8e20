"""
What a backend hands a WeChat mini program so it can open its socket to a
server running ``--auth wechat``: a signature that binds the uid, a fresh
timestamp and a nonce used once.  The same algorithm as
``realtime.auth.wechat.computeSignature`` (``mode=wx1``, the default),
spelled out so you can copy it into a backend that does not install
realtime:

    signature = sha1("wx1:" + token + ":" + timestamp + ":" + nonce + ":" + uid)
                (UTF-8, lower-case hex; nonce: 16 to 32 ASCII letters and digits)

    WECHAT_TOKEN=... python examples/python/ticket.py alice

The uid must come from your own session (after ``wx.login`` and
``code2Session``), never from the client: whoever gets a ticket for a uid
connects as that uid.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time


def ticket(token: str, uid: str, now: float | None = None) -> dict[str, str]:
    """
    The four fields, and the same as one ``wx.`` subprotocol.
    """
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)  # 32 hex digits, new for every ticket
    signature = hashlib.sha1(":".join(["wx1", token, timestamp, nonce, uid]).encode("utf-8")).hexdigest()
    return {
        "uid": uid,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": signature,
        "protocol": f"wx.{uid}.{timestamp}.{nonce}.{signature}",
    }


if __name__ == "__main__":
    token = os.environ.get("WECHAT_TOKEN")
    if not token:
        raise SystemExit("set WECHAT_TOKEN to the token the server runs with (--auth-option token=...)")
    print(json.dumps(ticket(token, sys.argv[1] if len(sys.argv) > 1 else "uid1")))
