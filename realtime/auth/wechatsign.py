"""
The signature of ``--auth wechat``: the exact text a backend signs, and its
check.  Pure functions without Twisted, so a backend may import just this.

``mode=wx1`` (the default) signs one string, the fields in a fixed order
joined by colons::

    wx1:<token>:<timestamp>:<nonce>:<uid>

    signature = sha1(that string as UTF-8), 40 lower-case hex digits

The token is the server's and fixed; the timestamp is digits and the nonce
letters and digits only (L{NONCE}), so neither holds a colon: the first
colon after the token ends the timestamp, the next ends the nonce, and the
rest, colons and all, is the uid.  Each value is therefore bound to its
field: no other (timestamp, nonce, uid) gives the same string.  The sorted
concatenation this replaces (``mode=legacy-sorted``) did not bind them: a
ticket for ``uid=adminx, nonce=q7f3k9`` was also one for ``uid=a,
nonce=dminxq7f3k9`` and for ``uid=q7f3k9, nonce=adminx``, so a client that
chose its nonce could become another uid.  Sorting is WeChat's algorithm for
the pushes WeChat's own servers sign (token, timestamp, nonce, no uid);
here nothing is gained from it, and PHP's C{sort} without C{SORT_STRING}
sorts numeric strings as numbers, a classic way to get it wrong.

The nonce is 16 to 32 ASCII letters and digits: no separator of this string
or of the ``wx.`` subprotocol can hide in it; 32 is WeChat's own limit for a
nonceStr and holds a 128-bit hex string (C{bin2hex(random_bytes(16))},
C{secrets.token_hex(16)}); and 16 or more random characters make two
backends' nonces collide never in practice, which matters because the
replay memory is keyed on the nonce alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from realtime.core.uids import checkUid

MODES = ("wx1", "legacy-sorted", "seed")
DEFAULT_MODE = "wx1"
DEFAULT_WINDOW = 300.0
#: a timestamp of more digits is not Unix seconds in any century we serve
MAX_TIMESTAMP_DIGITS = 16
#: the nonce of mode=wx1
NONCE = re.compile(r"[A-Za-z0-9]{16,32}")
NONCE_RULE = "nonce must be 16 to 32 ASCII letters and digits"
#: the legacy modes' nonce: anything short and printable
MAX_LEGACY_NONCE_LENGTH = 64

HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")


def signingText(token: str, timestamp: str, nonce: str = "", uid: str = "", mode: str = DEFAULT_MODE) -> str:
    """
    The text whose SHA-1 is the signature in C{mode}.

    @param mode: C{"wx1"} binds each field; C{"legacy-sorted"} sorts the
        four values as strings (PHP's C{SORT_STRING}) and concatenates them;
        C{"seed"} ignores C{nonce} and C{uid}, as the PHP seed did.
    @raise ValueError: for an unknown C{mode}.
    """
    if mode == "wx1":
        return f"wx1:{token}:{timestamp}:{nonce}:{uid}"
    if mode == "legacy-sorted":
        return "".join(sorted([token, timestamp, nonce, uid]))
    if mode == "seed":
        return token + timestamp
    raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def computeSignature(token: str, timestamp: str, nonce: str = "", uid: str = "", mode: str = DEFAULT_MODE) -> str:
    """
    The signature a client must send; backends call this to hand one out.

    @return: 40 lower-case hex digits.
    @raise ValueError: for an unknown C{mode}.
    """
    return hashlib.sha1(signingText(token, timestamp, nonce, uid, mode).encode("utf-8")).hexdigest()


def parseTimestamp(text: str) -> int:
    """
    Unix seconds from C{text}; only ASCII digits, so ``+1``, ``1e9`` and
    other digits Python's C{int} would take are refused.

    @raise ValueError: if it is not whole seconds.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_TIMESTAMP_DIGITS:
        raise ValueError("timestamp must be a Unix time in whole seconds")
    return int(text)


def parseNonce(text: str, mode: str = DEFAULT_MODE) -> str:
    """
    C{text} if it is a usable nonce in C{mode}: L{NONCE} for wx1; for the
    legacy modes, short and printable (it is a cache key and part of a
    subprotocol token).

    @raise ValueError: otherwise.
    """
    if mode == "wx1":
        if NONCE.fullmatch(text) is None:
            raise ValueError(NONCE_RULE)
    elif not 1 <= len(text) <= MAX_LEGACY_NONCE_LENGTH or not all(33 <= ord(c) <= 126 for c in text):
        raise ValueError(f"nonce must be 1 to {MAX_LEGACY_NONCE_LENGTH} printable ASCII characters")
    return text


@dataclass(frozen=True, slots=True)
class VerifiedCredentials:
    """
    Fields that passed L{checkSignature}, normalised.

    @ivar uid: exactly as signed (L{checkUid} refuses what it would change).
    @ivar timestamp: Unix seconds.
    @ivar nonce: C{None} only in seed mode.
    @ivar signature: lower-case hex.
    """

    uid: str
    timestamp: int
    nonce: str | None
    signature: str


def checkSignature(
    token: str,
    *,
    uid: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float,
    window: float = DEFAULT_WINDOW,
    mode: str = DEFAULT_MODE,
) -> VerifiedCredentials:
    """
    Check one set of fields, as the client sent them, against C{token} and
    the clock C{now}; the signature is compared in constant time.

    Replays are not checked here: that needs memory (L{NonceCache}).

    @raise ValueError: naming the first thing wrong; its text is the reason
        the client is given.
    """
    if not signature:
        raise ValueError("missing signature")
    if not timestamp:
        raise ValueError("missing timestamp")
    if not nonce and mode != "seed":
        raise ValueError("missing nonce")
    if not uid:
        raise ValueError("missing uid")
    checkUid(uid)
    seconds = parseTimestamp(timestamp)
    if nonce:
        parseNonce(nonce, mode)
    if not HEX_SIGNATURE.fullmatch(signature):
        raise ValueError("malformed signature: expected 40 hex digits")
    if abs(seconds - now) > window:
        raise ValueError(f"timestamp outside the {window:g} s window")
    expected = computeSignature(token, timestamp, nonce or "", uid, mode)
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise ValueError("bad signature")
    return VerifiedCredentials(uid, seconds, nonce or None, signature.lower())
