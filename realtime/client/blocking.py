"""
Blocking push clients for backends.

Django views, Flask handlers, cron jobs and shell scripts push with these;
this module uses the standard library only and imports neither Twisted nor
Autobahn, so it can be vendored into a backend that never runs the server.
Each client holds one connection and is not thread-safe: give each thread
its own::

    api = HttpPushClient("http://127.0.0.1:8081", apiKey="...")
    api.push("uid1", {"percent": "88%"})   # {"status": "delivered", "delivered": 1, "uids": {"uid1": 1}}
    with LinePushClient("127.0.0.1", 5678) as line:
        line.push("uid1", {"percent": "88%"})   # "ok" ("queued", "fail"); true only for "ok"

The ``realtime-push`` command built on them is L{realtime.client.cli}.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any, BinaryIO, Callable, Mapping, Sequence, TypeVar
from urllib.parse import quote, urlsplit

# signFirstPacket is provided by the module __getattr__ below
__all__ = [  # noqa: F822
    "HttpPushClient", "LinePushClient", "LineAnswer", "PushError", "findApiKey", "signFirstPacket", "DEFAULT_URL",
    "API_KEY_FILE",
]

DEFAULT_URL = "http://127.0.0.1:8081"
#: where the server writes the API key it generated, in its working directory
API_KEY_FILE = "realtime-api.key"

_T = TypeVar("_T")


def __getattr__(name: str) -> Any:
    """
    Re-export C{signFirstPacket} lazily: its module imports Twisted, which a
    backend that only pushes should not have to load.
    """
    if name == "signFirstPacket":
        from realtime.auth.firstpacket import signFirstPacket

        return signFirstPacket
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PushError(Exception):
    """
    The server refused a request, or could not be reached.

    @ivar status: the HTTP status; 0 when there was no HTTP answer (the line
        port, or a connection failure).
    @ivar code: the API's error code (C{"unauthorized"}, ...); for the line
        port C{"line_error"}; C{"connection_failed"} when unreachable.
    @ivar message: what the server said.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class HttpPushClient:
    """
    The HTTP API, over one keep-alive connection.

    A request on a reused connection that the server had already closed (it
    went idle, or the server restarted) is sent once more on a new one; no
    other request is ever repeated.
    """

    def __init__(self, url: str = DEFAULT_URL, apiKey: str = "", timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._apiKey = apiKey
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def push(self, uidOrUids: str | int | Sequence[str], data: Any) -> dict[str, Any]:
        """
        Push C{data} to every connection of one uid or of several.

        @param data: a string (received as that text) or any JSON value
            (received as its compact JSON).
        @return: C{{"status": "delivered"|"queued"|"offline", "delivered": N,
            "uids": {uid: N}}}, plus C{"queued": [uid, ...]} and
            C{"refused": [uid, ...]} (offline queue full) when some uids
            have no connection.
        """
        uid: Any = uidOrUids if isinstance(uidOrUids, (str, int)) else list(uidOrUids)
        return self._request("POST", "/api/push", {"uid": uid, "data": data})

    def broadcast(self, data: Any) -> dict[str, Any]:
        """
        Push C{data} to every connection.

        @return: C{{"status": "delivered"|"offline", "delivered": N}}.
        """
        return self._request("POST", "/api/broadcast", {"data": data})

    def online(self, *uids: str) -> dict[str, Any]:
        """
        @return: C{{"online": {uid: connections, ...}}}.
        """
        if not uids:
            raise ValueError("online() needs at least one uid")
        query = "&".join("uid=" + quote(uid, safe="") for uid in uids)
        return self._request("GET", "/api/online?" + query, None)

    def stats(self) -> dict[str, Any]:
        """
        @return: the server's counters (C{connections}, C{uids}, C{uptime}, ...).
        """
        return self._request("GET", "/api/stats", None)

    def backup(self, out: BinaryIO) -> int:
        """
        Write a copy of the server's SQLite database to C{out}, as it comes,
        never holding more than a buffer of it.

        @return: the bytes written.
        @raise PushError: if the server refused (409 C{no_database} with
            C{--store memory}, 409 C{backup_in_progress}, ...) - then
            nothing was written - or the download broke off (then C{out}
            holds a part: discard it).
        """
        return self._request("GET", "/api/backup", None, lambda response: _copyBody(response, out))

    def close(self) -> None:
        """
        Close the connection; the next request opens a new one.
        """
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> HttpPushClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _request(
        self, method: str, path: str, body: Any, consume: Callable[[http.client.HTTPResponse], _T] | None = None
    ) -> Any:
        """
        Send a request and answer its decoded JSON, or what C{consume} makes
        of a successful response.
        """
        headers = {"Authorization": f"Bearer {self._apiKey}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            reused = self._connection is not None
            connection = self._connection = self._connection or self._connect()
            try:
                connection.request(method, self._prefix + path, payload, headers)
                response = connection.getresponse()
                if consume is not None and response.status < 400:
                    return self._consumed(response, consume)
                raw = response.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # RemoteDisconnected is a ConnectionResetError: the server closed the idle connection
                if reused and attempt == 0 and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                    continue
                raise PushError(0, "connection_failed", str(e) or type(e).__name__) from e
            if response.will_close:
                self.close()
            return _decodeAnswer(response.status, response.reason, raw)
        raise AssertionError("unreachable")

    def _consumed(self, response: http.client.HTTPResponse, consume: Callable[[http.client.HTTPResponse], _T]) -> _T:
        """
        C{consume(response)}; once part of a body is consumed, a broken
        connection is an error, never a reason to send the request again.
        """
        try:
            result = consume(response)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise PushError(0, "connection_failed", f"the answer broke off: {e or type(e).__name__}") from e
        if response.will_close:
            self.close()
        return result


def _copyBody(response: http.client.HTTPResponse, out: BinaryIO) -> int:
    """
    Copy C{response}'s body to C{out} a buffer at a time.

    @raise ConnectionError: if the body is shorter than its Content-Length
        (C{read(amt)} does not say so by itself).
    """
    expected = response.getheader("Content-Length")
    written = 0
    while chunk := response.read(65536):
        out.write(chunk)
        written += len(chunk)
    if expected is not None and expected.isdigit() and written != int(expected):
        raise ConnectionError(f"the connection closed after {written} of {expected} bytes")
    return written


def _decodeAnswer(status: int, reason: str, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        body = None
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise PushError(status, str(error.get("code", "http_error")), str(error.get("message", reason)))
        raise PushError(status, "http_error", reason)
    if not isinstance(body, dict):
        raise PushError(status, "bad_response", "the server did not answer a JSON object")
    return body


class LineAnswer(str):
    """
    The line port's answer to a push: C{"ok"} (a connection got it),
    C{"queued"} (the uid has no connection; the push waits in its offline
    queue) or C{"fail"} (neither).

    It is true only for C{"ok"}, so C{if line.push(...)} still means "a
    connection got it" as when C{push} answered a bool.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return self == "ok"

    @property
    def delivered(self) -> bool:
        """
        Whether at least one connection got it.
        """
        return self == "ok"

    @property
    def queued(self) -> bool:
        """
        Whether it waits in an offline queue instead.
        """
        return self == "queued"


_LINE_ANSWERS = {word: LineAnswer(word) for word in ("ok", "queued", "fail")}


class LinePushClient:
    """
    The line port (Workerman's Text protocol), over one TCP connection.

    The message pushed is the request line itself, as Workerman's
    C{sendMessageByUid($uid, $buffer)} did, so C{fields} are what the page
    receives, together with C{"uid"}.  A request on a reused connection whose
    answer never came because the server had closed it is sent once more.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5678, timeout: float = 5) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._reader: Any = None

    def push(self, uid: str | int | Sequence[str], fields: Mapping[str, Any]) -> LineAnswer:
        """
        Push C{{"uid": uid, **fields}} to every connection of C{uid}.

        @return: C{"ok"} if at least one connection got it, C{"queued"} if
            it waits in the offline queue of a uid without a connection,
            C{"fail"} otherwise; true only for C{"ok"}.
        @raise PushError: if the server answered ``error: ...``.
        """
        return self._send({"uid": uid if isinstance(uid, (str, int)) else list(uid)}, fields)

    def broadcast(self, fields: Mapping[str, Any]) -> LineAnswer:
        """
        Push C{{"broadcast": true, **fields}} to every connection.

        @return: C{"ok"} if at least one connection got it, else C{"fail"}.
        """
        return self._send({"broadcast": True}, fields)

    def close(self) -> None:
        """
        Close the connection; the next push opens a new one.
        """
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> LinePushClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, target: dict[str, Any], fields: Mapping[str, Any]) -> LineAnswer:
        if "uid" in fields or "broadcast" in fields:
            raise ValueError('fields must not contain "uid" or "broadcast"')
        line = json.dumps({**target, **fields}, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        for attempt in (0, 1):
            reused = self._socket is not None
            try:
                if self._socket is None:
                    self._socket = socket.create_connection((self.host, self.port), timeout=self.timeout)
                    self._reader = self._socket.makefile("rb")
                self._socket.sendall(line)
                answer = self._reader.readline(65536)
            except OSError as e:
                self.close()
                if reused and attempt == 0 and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                    continue
                raise PushError(0, "connection_failed", str(e) or type(e).__name__) from e
            if not answer:
                self.close()
                if reused and attempt == 0:
                    continue
                raise PushError(0, "connection_failed", "the server closed the connection")
            text = answer.decode("utf-8", "replace").rstrip("\r\n")
            if text in _LINE_ANSWERS:
                return _LINE_ANSWERS[text]
            if not answer.endswith(b"\n"):
                self.close()
            raise PushError(0, "line_error", text.removeprefix("error: "))
        raise AssertionError("unreachable")


def findApiKey(environ: Mapping[str, str], directory: str) -> str | None:
    """
    The API key from C{$REALTIME_API_KEY}, else from C{realtime-api.key} in
    C{directory} (where the server writes the key it generated), else C{None}.
    """
    key = environ.get("REALTIME_API_KEY")
    if key:
        return key
    try:
        with open(os.path.join(directory, API_KEY_FILE), encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None
