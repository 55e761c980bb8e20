"""
The HTTP API's contract as an OpenAPI 3.1 document, served without the key
at ``/api/openapi.json``, so a PHP, JS or Python developer can generate a
client and a tool can check the server against it.

The document is built here, next to the server, rather than written by hand
elsewhere: ``tests/test_api_openapi.py`` runs schemathesis against a live server
with it, so an answer that drifts from what the document promises fails the
tests instead of a generated client.  It describes what ``http.py``'s
module docstring and the README's *The HTTP API* section say; change the
three together.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from realtime import __version__
from realtime.api.cors import CorsPolicy
from realtime.core.namespaces import CHANNEL_NAME

# the character sets checkUid refuses, so the document states the same rule
from realtime.core.uids import _REFUSED_ASTRAL, _REFUSED_BMP, MAX_UID_LENGTH

_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_COUNT = {"type": "integer", "minimum": 0}



def _uidPattern() -> str:
    """
    L{realtime.core.uids.checkUid}'s rule as a regular expression: no control or
    format character (lone surrogates, which no JSON text decodes to a
    character, are left out) and no whitespace at either end.
    """
    refused = _REFUSED_BMP.replace("\ud800-\udfff", "") + "".join(sorted(_REFUSED_ASTRAL))
    return f"^[^\\s{refused}]([^{refused}]{{0,{MAX_UID_LENGTH - 2}}}[^\\s{refused}])?$"


_UID = {
    "oneOf": [{"type": "string", "maxLength": MAX_UID_LENGTH, "pattern": _uidPattern()}, {"type": "integer"}],
    "description": (
        "a uid: no control or invisible format characters (U+200B, U+202E, ...) and no whitespace at either end; "
        "an integer is taken as its decimal text (PHP often sends ids as numbers)"
    ),
}
_CHANNEL = {"type": "string", "pattern": f"^{CHANNEL_NAME.pattern}$", "examples": ["chat:lobby"]}
_ANY_JSON = {"description": "any JSON value"}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
}

#: the error codes each status can carry, as the server spells them
ERROR_CODES: dict[str, tuple[str, str]] = {
    "400": (
        "bad_json: the body is empty, not UTF-8 or not JSON (the message says where); invalid_request: not an "
        'object, "uid", "data" or "channel" missing or ill-typed, or a query parameter missing',
        "",
    ),
    "401": ("unauthorized: the Authorization header is missing, malformed, or has the wrong key", "WWW-Authenticate"),
    "405": ("method_not_allowed: the endpoint takes another method, named in Allow", "Allow"),
    "413": (
        "payload_too_large: the body is longer than --max-message-size; it was discarded unread. "
        "too_many_uids: more uids in one push than --max-uids-per-push (default 10000)",
        "",
    ),
    "409": (
        "no_database: the server keeps its messages in memory (--store memory), there is no file to back up; "
        "backup_in_progress: another backup is being made or downloaded, try again once it is done",
        "",
    ),
    "415": ("unsupported_media_type: a multipart body (any other Content-Type is read as JSON)", ""),
    "429": ("rate_limited: pushes over --api-rate for this key; wait Retry-After seconds", "Retry-After"),
    "431": ("headers_too_large: the request head is over 16 KiB or 500 header lines; the connection closes", ""),
    "500": ("internal_error: logged on the server with its traceback", ""),
    "503": (
        "shutting_down: the server is stopping; store_unavailable: the message store failed (the message says "
        "why); try again after Retry-After seconds",
        "Retry-After",
    ),
}


def _object(properties: dict[str, Any], required: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def _error(status: str) -> dict[str, Any]:
    description, header = ERROR_CODES[status]
    answer: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": _ERROR}}}
    if header == "Retry-After":
        answer["headers"] = _RETRY_AFTER
    elif header:
        answer["headers"] = {header: {"description": f"the {header} header", "schema": {"type": "string"}}}
    return answer


def _operation(name: str, summary: str, answer: str, errors: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """
    The authenticated operation C{/api/<name>}, answering 200 with the
    schema C{answer}, or one of the C{errors} or those every request can get.
    """
    responses: dict[str, Any] = {
        "200": {"description": summary, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{answer}"}}}},
    }
    for status in ("401", "405", "431", *errors, "500", "503"):
        responses[status] = _error(status)
    return {"summary": summary, "operationId": name, "responses": dict(sorted(responses.items())), **extra}


def _post(name: str, summary: str, body: str, answer: str) -> dict[str, Any]:
    request = {"required": True, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return {"post": _operation(name, summary, answer, ("400", "413", "415", "429"), requestBody=request)}


def _get(name: str, summary: str, answer: str, parameter: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = {"parameters": [parameter]} if parameter else {}
    return {"get": _operation(name, summary, answer, ("400",) if parameter else (), **extra)}


def _backup() -> dict[str, Any]:
    """
    C{GET /api/backup}: its answer is the database file, not JSON.
    """
    operation = _get("backup", "A consistent copy of the SQLite database, made by the server while it runs", "Stats")
    disposition = {
        "description": 'attachment; filename="realtime-<UTC time, 20261201T182901Z>.sqlite3"',
        "schema": {"type": "string"},
    }
    operation["get"]["responses"]["200"] = {
        "description": (
            "the database (channel history, offline queues, uids seen), compacted; restore it by stopping the "
            "server and putting it in place of the store's file (remove the -wal file beside it)"
        ),
        "headers": {"Content-Disposition": disposition},
        "content": {"application/vnd.sqlite3": {"schema": {"type": "string", "contentMediaType": "application/vnd.sqlite3"}}},
    }
    operation["get"]["responses"]["409"] = _error("409")
    operation["get"]["responses"] = dict(sorted(operation["get"]["responses"].items()))
    return operation


def _schemas() -> dict[str, Any]:
    uids = {"type": "object", "additionalProperties": _COUNT, "description": "connections reached, per uid"}
    listed = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": _object(
            {"error": _object({"code": {"type": "string"}, "message": {"type": "string"}}, ("code", "message"))},
            ("error",),
        ),
        "PushRequest": _object(
            {"uid": {"oneOf": [_UID, {"type": "array", "items": _UID, "minItems": 1}]}, "data": _ANY_JSON},
            ("uid", "data"),
            description="a string data reaches the client as exactly that text, anything else as its compact JSON",
        ),
        "PushAnswer": _object(
            {
                "status": {"enum": ["delivered", "queued", "offline"]},
                "delivered": {**_COUNT, "description": "connections the message was written to"},
                "uids": uids,
                "queued": {**listed, "description": "uids without a connection whose push waits offline"},
                "refused": {**listed, "description": "uids without a connection whose offline queue is full"},
            },
            ("status", "delivered", "uids"),
        ),
        "BroadcastRequest": _object({"data": _ANY_JSON, "uid": False}, ("data",)),
        "BroadcastAnswer": _object(
            {"status": {"enum": ["delivered", "offline"]}, "delivered": _COUNT}, ("status", "delivered")
        ),
        "PublishRequest": _object({"channel": _CHANNEL, "data": _ANY_JSON}, ("channel", "data")),
        "PublishAnswer": _object(
            {
                "status": {"const": "published"},
                "channel": _CHANNEL,
                "offset": {"type": ["integer", "null"], "description": "null if the channel keeps no history"},
                "epoch": {"type": ["string", "null"]},
                "delivered": _COUNT,
            },
            ("status", "channel", "offset", "epoch", "delivered"),
        ),
        "Presence": _object(
            {"channel": _CHANNEL, "uids": uids, "connections": _COUNT}, ("channel", "uids", "connections")
        ),
        "Online": _object({"online": uids}, ("online",)),
        "Stats": _object(
            {
                "connections": _COUNT,
                "uids": _COUNT,
                "channels": _COUNT,
                "pendingDeliveries": _COUNT,
                "uptime": {"type": "number", "minimum": 0},
            },
            ("connections", "uids", "uptime"),
            description="every counter of the README's Operations section; more may be added",
        ),
    }


def _paths() -> dict[str, Any]:
    """
    Every path of the API, each with its operations.
    """
    channel = {"name": "channel", "in": "query", "required": True, "schema": _CHANNEL}
    uid = {
        "name": "uid",
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "description": "repeat it for several uids: ?uid=u1&uid=u2",
    }
    return {
        "/api/push": _post("push", "Send data to the connections of one or more uids", "PushRequest", "PushAnswer"),
        "/api/broadcast": _post("broadcast", "Send data to every connection", "BroadcastRequest", "BroadcastAnswer"),
        "/api/publish": _post(
            "publish",
            "Publish to a channel: kept in its history if its namespace keeps one, then sent to its subscribers",
            "PublishRequest",
            "PublishAnswer",
        ),
        "/api/presence": _get("presence", "Who is subscribed to a channel", "Presence", channel),
        "/api/online": _get("online", "Connections per uid (0 when offline)", "Online", uid),
        "/api/stats": _get("stats", "The server's counters", "Stats"),
        "/api/backup": _backup(),
        "/api/openapi.json": {
            "get": {
                "summary": "This document (no key needed)",
                "operationId": "openapi",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {_JSON: {"schema": {"type": "object"}}}}
                },
            }
        },
    }


def buildSpec(maxBodySize: int | None = None) -> dict[str, Any]:
    """
    The OpenAPI 3.1 document of the HTTP API.

    @param maxBodySize: the server's body limit, stated in the 413 answers.
    """
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "realtime HTTP push API",
            "version": __version__,
            "description": (
                "Push to uids, everyone or a channel, and read presence and counters. JSON in, JSON out; "
                "every request except this document needs Authorization: Bearer <api key>. Browsers may "
                "call it from the pages --api-cors-origin allows (CORS preflights need no key)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the API key"}},
            "schemas": _schemas(),
        },
    }
    if maxBodySize is not None:
        for path in ("/api/push", "/api/broadcast", "/api/publish"):
            spec["paths"][path]["post"]["responses"]["413"]["description"] += f" ({maxBodySize} bytes here)"
    return spec


class OpenApiResource(Resource):
    """
    ``/api/openapi.json``: the document, to anyone (it holds no secret:
    what the API does is in the README too), readable by the pages CORS
    allows so an API explorer can load it.
    """

    isLeaf = True

    def __init__(self, cors: CorsPolicy, maxBodySize: int | None = None) -> None:
        super().__init__()
        self._cors = cors
        self._body = json.dumps(buildSpec(maxBodySize), indent=1).encode("utf-8")

    def render(self, request: IRequest) -> bytes:
        self._cors.decorate(request)
        request.setHeader(b"Content-Type", _JSON.encode())
        if request.postpath and request.postpath != [b""]:
            request.setResponseCode(404)
            return b'{"error": {"code": "not_found", "message": "no such endpoint"}}'
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            return b'{"error": {"code": "method_not_allowed", "message": "use GET for this endpoint"}}'
        return self._body
