"""
The HTTP API's words, as values: the errors it answers with, the text a
client receives for a request's ``"data"``, and the JSON answer to a push.
Pure, so each is tested without a request (C{realtime.api.http} serves them).
"""

from __future__ import annotations

from typing import Any

from realtime.core.jsoncodec import JSONError, encode
from realtime.values import PushResult, Target, ToChannel, ToUids

__all__ = ["ApiError", "invalid", "isMultipart", "messagePayload", "jsonData", "pushAnswer"]


class ApiError(Exception):
    """
    A request refused with an HTTP status and a JSON error body.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    """
    A 400 C{invalid_request} saying C{message}.
    """
    return ApiError(400, "invalid_request", message)


def isMultipart(contentType: bytes) -> bool:
    """
    Whether C{contentType} is a form upload, which is never JSON.
    """
    return contentType.split(b";", 1)[0].strip().lower().startswith(b"multipart/")


def messagePayload(data: object) -> bytes:
    """
    The text a client receives for the JSON value C{data}.

    A string is sent as itself, not quoted, so a backend can send plain text
    (or JSON it serialised itself) and the page gets exactly that.

    @raise ApiError: for data UTF-8 JSON cannot carry (see L{jsonData}).
    """
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            pass
    return jsonData(data)


def jsonData(data: object) -> bytes:
    """
    The JSON text of C{data}, as it is stored and sent.

    @raise ApiError: for a lone surrogate (a C{\\ud800} escape), a float out
        of range (C{1e999}) or nesting too deep to write.
    """
    try:
        return encode(data)
    except JSONError as e:
        raise invalid(f'"data" {e}') from None


def pushAnswer(target: Target, result: PushResult) -> dict[str, Any]:
    """
    The JSON answer to a push, a broadcast or a publish: the one place the
    API words a C{PushResult}, whether it came at once or later.
    """
    if type(target) is ToChannel:
        return {
            "status": "published",
            "channel": target.name,
            "offset": result.offset,
            "epoch": result.epoch,
            "delivered": result.delivered,
        }
    if result.delivered:
        status = "delivered"
    elif result.queued:
        status = "queued"
    else:
        status = "offline"
    answer: dict[str, Any] = {"status": status, "delivered": result.delivered}
    if type(target) is ToUids:
        answer["uids"] = dict(result.uids)
        if result.queued:
            answer["queued"] = list(result.queued)
        if result.refused:
            answer["refused"] = list(result.refused)
    return answer
