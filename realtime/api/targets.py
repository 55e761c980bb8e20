"""
Where a backend's push goes, read from its request: pure, so every malformed
case is tested without a connection.

Both ports share the uid rules (L{targetUids}: the HTTP API's ``"uid"`` and
the line port's accept the same values); L{parseLine} reads a whole line of
the line port (C{realtime.api.lineproto}).
"""

from __future__ import annotations

from realtime.core.jsoncodec import JSONError, decode, decodeQuickly
from realtime.core.uids import checkUid
from realtime.values import Target, ToAll, ToUids

__all__ = ["LineError", "TooManyUids", "targetUids", "parseLine"]

_UID_TYPE = '"uid" must be a non-empty string or a list of them'


class LineError(ValueError):
    """
    A request line that cannot be pushed; C{str()} is the text after
    ``error: ``.
    """


class TooManyUids(LineError):
    """
    A push naming more uids than C{--max-uids-per-push} allows: its work
    and its answer would grow without bound.
    """


def targetUids(value: object, maxUids: int | None = None) -> tuple[str, ...]:
    """
    The uids a request's ``"uid"`` field addresses.

    Shared by the line port and the HTTP API so both accept the same uids.

    @param value: a decoded JSON value: a string, an integer (PHP sends
        numeric ids as numbers), or a non-empty list of those.
    @param maxUids: the longest list accepted (C{None}: any).
    @raise LineError: for anything else, an empty uid, or one that no client
        can have (L{checkUid}: control or format characters, a lone surrogate
        from a C{\\ud800} escape, ...).
    @raise TooManyUids: for a list longer than C{maxUids}.
    """
    if type(value) is str and value:
        # the common case: one uid, checked without a call more
        try:
            return (checkUid(value, '"uid"'),)
        except ValueError as e:
            raise LineError(str(e)) from None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise LineError(_UID_TYPE)
    if maxUids is not None and len(items) > maxUids:
        raise TooManyUids(f"too many uids ({len(items)}; at most {maxUids} per push, --max-uids-per-push)")
    uids = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item:
            raise LineError(_UID_TYPE)
        uids.append(_checkUid(item))
    return tuple(uids)


def _checkUid(uid: str) -> str:
    """
    C{checkUid}'s verdict as the line port and the API word it.
    """
    try:
        return checkUid(uid, '"uid"')
    except ValueError as e:
        raise LineError(str(e)) from None


def parseLine(line: bytes, maxUids: int | None = None) -> Target:
    """
    Where a request line asks its own text to be pushed.

    Pure, so every malformed case is tested without a connection.

    @param line: one line, without its line ending.
    @param maxUids: the most uids one line may name (C{None}: any).
    @raise LineError: naming what is wrong with it.
    """
    request = decodeQuickly(line)
    if type(request) is dict:
        uid = request.get("uid")
        if type(uid) is str and uid and not request.get("broadcast"):
            # nearly every line: one uid, read by orjson (decodeQuickly says
            # why only a string field is taken from it)
            try:
                return ToUids((checkUid(uid, '"uid"'),))
            except ValueError as e:
                raise LineError(str(e)) from None
        if uid is None and "uid" not in request and request.get("broadcast"):
            # a truth value reads the same in both parsers
            return ToAll()
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError("line is not UTF-8") from None
    try:
        request = decode(text)
    except JSONError as e:
        where = "" if e.colno is None else f" at column {e.colno}"
        raise LineError(f"invalid JSON ({e.msg}{where})") from None
    if not isinstance(request, dict):
        raise LineError("expected a JSON object")
    broadcast = bool(request.get("broadcast"))
    if "uid" in request:
        if broadcast:
            raise LineError('give either "uid" or "broadcast": true, not both')
        return ToUids(targetUids(request["uid"], maxUids))
    if broadcast:
        return ToAll()
    raise LineError('missing "uid" (or "broadcast": true)')
