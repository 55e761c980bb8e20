"""
The JSON client protocol of ``--routing channels``: parsing requests and
encoding what the server sends, in one place so the strategy, the router and
``realtime.js`` agree on every byte.

Client to server, one JSON object per text message, each with an ``id`` the
reply carries back::

    {"id": 1, "op": "subscribe", "channel": "news", "since": {"epoch": "9f3a", "offset": 41}}
    {"id": 2, "op": "unsubscribe", "channel": "news"}
    {"id": 3, "op": "publish", "channel": "chat:lobby", "data": {"text": "hi"}}
    {"id": 4, "op": "presence", "channel": "chat:lobby"}
    {"id": 5, "op": "ping"}

Server to client::

    {"type": "reply", "id": 1, "ok": true, "result": {...}}
    {"type": "reply", "id": 1, "ok": false, "error": {"code": "forbidden", "message": "..."}}
    {"type": "message", "channel": "news", "offset": 42, "epoch": "9f3a", "data": ...}
    {"type": "join", "channel": "chat:lobby", "uid": "alice"}
    {"type": "leave", "channel": "chat:lobby", "uid": "alice"}
    {"type": "push", "data": "..."}         (a backend push to the uid; data is its text)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from realtime.core.jsoncodec import JSONError, decode, encode
from realtime.core.namespaces import validChannel
from realtime.values import Position

OPS = ("subscribe", "unsubscribe", "publish", "presence", "ping")

#: error codes of replies, with what they mean (README lists them)
ERRORS = {
    "bad_json": "the message is not valid JSON text (NaN, Infinity and nesting too deep are not)",
    "bad_request": "not an object, no usable id, a field missing or of the wrong type, or data that cannot be sent",
    "unknown_op": "op is none of subscribe, unsubscribe, publish, presence, ping",
    "bad_channel": "the channel name is not valid",
    "forbidden": "this identity may not subscribe to / publish on this channel",
    "not_subscribed": "unsubscribe from a channel this connection is not subscribed to",
    "already_subscribed": "subscribe to a channel this connection is already subscribed to",
    "presence_disabled": "presence is not enabled for this channel's namespace",
    "too_many_subscriptions": "this connection has reached the subscription limit",
    "unavailable": "the message store or the broker is failing, or the server is shutting down: try again later",
    "internal": "the server failed; it is logged",
}


@dataclass(frozen=True, slots=True)
class Request:
    """
    A well-formed client request.
    """

    id: Any
    op: str
    channel: str | None = None
    since: Position | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """
    A request that can only be answered with an error.
    """

    id: Any
    code: str
    message: str


_dumps = encode


def _unsendable(value: object) -> JSONError | None:
    """
    Why C{value}, read from a request, could not be written back in a reply
    or a message (a lone surrogate, an infinite float, too deep), if so.
    """
    try:
        encode(value)
    except JSONError as e:
        return e
    return None


def parseRequest(payload: bytes, isBinary: bool) -> Request | Failure:
    """
    Parse one client message.
    """
    if isBinary:
        return Failure(None, "bad_request", "requests are JSON text messages, not binary")
    try:
        obj = decode(payload.decode("utf-8"))
    except (JSONError, UnicodeDecodeError) as e:
        return Failure(None, "bad_json", f"invalid JSON: {e}")
    if not isinstance(obj, dict):
        return Failure(None, "bad_request", "a request is a JSON object")
    requestId = obj.get("id")
    if requestId is None or isinstance(requestId, (bool, dict, list, float)):
        return Failure(None, "bad_request", '"id" must be a number or a string')
    if isinstance(requestId, str) and (problem := _unsendable(requestId)):
        # the reply could not carry this id back
        return Failure(None, "bad_request", f'"id" {problem}')
    op = obj.get("op")
    if op not in OPS:
        return Failure(requestId, "unknown_op", f"op must be one of {', '.join(OPS)}, not {op!r}")
    if op == "ping":
        return Request(requestId, op)
    channel = obj.get("channel")
    if channel is None:
        return Failure(requestId, "bad_request", f'{op} needs "channel"')
    if not validChannel(channel):
        return Failure(requestId, "bad_channel", f"invalid channel name {channel!r}")
    since = None
    if op == "subscribe" and obj.get("since") is not None:
        raw = obj["since"]
        epoch = raw.get("epoch") if isinstance(raw, dict) else None
        offset = raw.get("offset") if isinstance(raw, dict) else None
        if not isinstance(epoch, str) or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return Failure(requestId, "bad_request", '"since" must be {"epoch": string, "offset": integer >= 0}')
        since = Position(epoch, offset)
    data = None
    if op == "publish":
        if "data" not in obj:
            return Failure(requestId, "bad_request", 'publish needs "data"')
        try:
            data = encode(obj["data"])
        except JSONError as e:
            return Failure(requestId, "bad_request", f'"data" {e}')
    return Request(requestId, op, channel, since, data)


def encodeReply(requestId: Any, result: dict[str, Any]) -> bytes:
    """
    A successful reply.
    """
    return _dumps({"type": "reply", "id": requestId, "ok": True, "result": result})


def encodeError(requestId: Any, code: str, message: str) -> bytes:
    """
    An error reply.
    """
    return _dumps({"type": "reply", "id": requestId, "ok": False, "error": {"code": code, "message": message}})


def encodeMessage(channel: str, offset: int | None, epoch: str | None, data: bytes) -> bytes:
    """
    A channel message; C{data} is already JSON text and is embedded as is,
    so a message read back from history is never re-parsed.
    """
    head = b'{"type":"message","channel":' + _dumps(channel)
    if offset is not None:
        head += b',"offset":' + str(offset).encode() + b',"epoch":' + _dumps(epoch)
    return head + b',"data":' + data + b"}"


def encodeIdentity(uid: str) -> bytes:
    """
    The frame telling a client that asked for it (C{?identity=1}) the uid the
    server gave it: an anonymous page can then show, and push to, its real
    uid.  Only sent when asked, so a relay-chat or Workerman client never
    sees a frame it does not expect.
    """
    return _dumps({"type": "identity", "uid": uid})


def encodePresenceEvent(kind: str, channel: str, uid: str) -> bytes:
    """
    A join or leave event.
    """
    return _dumps({"type": kind, "channel": channel, "uid": uid})


def encodePush(payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
    """
    A backend push as a channels client receives it: the text it would have
    received without the protocol, as a JSON string.
    """
    if isBinary:
        return payload, True
    return b'{"type":"push","data":' + _dumps(payload.decode("utf-8", "replace")) + b"}", False
