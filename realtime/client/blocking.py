"""
A blocking client for backends, and the ``realtime-push`` command.

Django views, Flask handlers, cron jobs and shell scripts push with this; it
uses the standard library only and imports neither Twisted nor Autobahn, so
it can be vendored into a backend that never runs the server.  Each client
holds one connection and is not thread-safe: give each thread its own::

    api = HttpPushClient("http://127.0.0.1:8081", apiKey="...")
    api.push("uid1", {"percent": "88%"})   # {"status": "delivered", "delivered": 1, "uids": {"uid1": 1}}
    with LinePushClient("127.0.0.1", 5678) as line:
        line.push("uid1", {"percent": "88%"})   # "ok" ("queued", "fail"); true only for "ok"

The command line::

    realtime-push push uid1 '{"percent": "88%"}'        # exit 0 delivered, 3 queued, 1 neither, 2 error
    realtime-push push uid1 uid2 'plain text'
    realtime-push --via line push uid1 '{"percent": "88%"}'
    realtime-push broadcast '"maintenance at 22:00"'
    realtime-push online uid1 uid2                       # exit 0 if any is online, else 1
    realtime-push stats
    realtime-push backup backup.sqlite3                  # a copy of the server's database (exit 0, or 2)
    realtime-push sign uid1 --secret S --ttl 3600        # a first packet for verify=hmac
    realtime-push subscribe news:sport --since 9f3a:41   # JSON lines until ^C (loads Twisted)

``--url`` defaults to C{$REALTIME_API_URL} or C{http://127.0.0.1:8081},
``--line`` to C{$REALTIME_LINE} or C{127.0.0.1:5678},
``--api-key`` to C{$REALTIME_API_KEY}, else the file C{realtime-api.key} in
the current directory.  DATA is sent as JSON if it parses as JSON, else as
text.  Through the line port the pushed message is the request line itself,
so a JSON object DATA gives the line's fields and anything else is sent as
C{{"uid": ..., "data": DATA}}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import time
from typing import Any, BinaryIO, Callable, Mapping, Sequence, TextIO, TypeVar
from urllib.parse import quote, urlsplit

# signFirstPacket is provided by the module __getattr__ below
__all__ = ["HttpPushClient", "LinePushClient", "LineAnswer", "PushError", "signFirstPacket", "main"]  # noqa: F822

DEFAULT_URL = "http://127.0.0.1:8081"
DEFAULT_LINE = "127.0.0.1:5678"
DEFAULT_WS_URL = "ws://127.0.0.1:8080/ws"
API_KEY_FILE = "realtime-api.key"

#: the command's exit statuses: delivered, neither delivered nor queued,
#: an error (usage, connection, refusal), queued for an offline uid
EXIT_DELIVERED, EXIT_UNDELIVERED, EXIT_ERROR, EXIT_QUEUED = 0, 1, 2, 3

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


# -- the command line --------------------------------------------------------


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


def parseData(text: str) -> Any:
    """
    C{text} as JSON if it parses, else C{text} itself.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime-push", description="Push to a realtime server.")
    parser.add_argument(
        "--via", choices=("http", "line"), default="http", help="push through the HTTP API or the line port"
    )
    parser.add_argument("--url", default=None, help=f"HTTP API URL (default $REALTIME_API_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"API key (default $REALTIME_API_KEY, else ./{API_KEY_FILE})")
    parser.add_argument("--line", default=None, metavar="HOST:PORT", help=f"line port (default $REALTIME_LINE or {DEFAULT_LINE})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push = commands.add_parser("push", help="push DATA to every connection of each UID")
    push.add_argument("uids", nargs="+", metavar="UID")
    push.add_argument("data", metavar="DATA")
    broadcast = commands.add_parser("broadcast", help="push DATA to every connection")
    broadcast.add_argument("data", metavar="DATA")
    online = commands.add_parser("online", help="how many connections each UID holds")
    online.add_argument("uids", nargs="+", metavar="UID")
    commands.add_parser("stats", help="the server's counters")
    backup = commands.add_parser("backup", help="save a copy of the server's database to FILE ('-': standard output)")
    backup.add_argument("file", metavar="FILE")
    sign = commands.add_parser("sign", help="a signed first packet for --auth uid-first-packet verify=hmac")
    sign.add_argument("uid", metavar="UID")
    sign.add_argument("--secret", required=True)
    sign.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (default %(default)s)")
    sub = commands.add_parser("subscribe", help="print each message of CHANNELs as a JSON line until interrupted")
    sub.add_argument("channels", nargs="+", metavar="CHANNEL")
    sub.add_argument("--url", dest="wsUrl", metavar="URL", default=DEFAULT_WS_URL, help="default %(default)s")
    sub.add_argument("--since", metavar="EPOCH:OFFSET", help="resume from this position (one CHANNEL only)")
    sub.add_argument("--first-message", metavar="UID", help="sent first on each connection (uid-first-packet auth)")
    return parser


def _lineAddress(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--line wants HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _table(rows: Mapping[str, Any]) -> str:
    width = max((len(str(k)) for k in rows), default=0)
    return "\n".join(f"{str(k).ljust(width)}  {v}" for k, v in rows.items())


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "sign":
        from realtime.auth.firstpacket import signFirstPacket

        print(signFirstPacket(args.secret.encode("utf-8"), args.uid, int(time.time()) + args.ttl), file=out)
        return 0
    uids = getattr(args, "uids", [])
    target = uids[0] if len(uids) == 1 else uids
    if args.via == "line" and args.command in ("push", "broadcast"):
        host, port = _lineAddress(args.line or os.environ.get("REALTIME_LINE") or DEFAULT_LINE)
        data = parseData(args.data)
        fields = data if isinstance(data, dict) else {"data": data}
        with LinePushClient(host, port, args.timeout) as line:
            word = line.push(target, fields) if args.command == "push" else line.broadcast(fields)
        print(word, file=out)
        return EXIT_DELIVERED if word.delivered else EXIT_QUEUED if word.queued else EXIT_UNDELIVERED
    apiKey = args.api_key or findApiKey(os.environ, os.getcwd())
    if not apiKey:
        raise ValueError(f"no API key: pass --api-key, set REALTIME_API_KEY, or put it in ./{API_KEY_FILE}")
    url = args.url or os.environ.get("REALTIME_API_URL") or DEFAULT_URL
    with HttpPushClient(url, apiKey, args.timeout) as api:
        if args.command == "push":
            answer = api.push(target, parseData(args.data))
        elif args.command == "broadcast":
            answer = api.broadcast(parseData(args.data))
        elif args.command == "backup":
            saveBackup(api, args.file, out)
            return 0
        elif args.command == "online":
            online = api.online(*uids)["online"]
            print(_table(online), file=out)
            return 0 if any(online.values()) else 1
        else:
            from realtime.client.statstable import formatStats
            print(formatStats(api.stats()), file=out)
            return 0
    print(json.dumps(answer, ensure_ascii=False), file=out)
    status = answer.get("status")
    return EXIT_DELIVERED if status == "delivered" else EXIT_QUEUED if status == "queued" else EXIT_UNDELIVERED


def saveBackup(api: HttpPushClient, path: str, out: TextIO) -> None:
    """
    Download a backup into C{path}: written to a temporary file beside it
    and renamed over it only once complete, so a broken download never
    leaves a truncated file (nor replaces a good one) under that name.
    With C{path} C{-}, written to standard output as it comes.
    """
    if path == "-":
        api.backup(sys.stdout.buffer)
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            size = api.backup(f)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise
    print(f"{path}: {size} bytes", file=out)


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """
    The ``realtime-push`` console script.

    @return: the exit status: 0 delivered (or ok, or someone online, or
        the backup saved), 3
        queued for an offline uid (a push that will be delivered at the
        uid's next connection, which a script may count as success), 1
        neither (offline, fail, nobody online), 2 an error (usage, the
        server unreachable or refusing), reported in one line on C{stderr}.
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    try:
        return _subscribe(args, out, err) if args.command == "subscribe" else _run(args, out)
    except (PushError, ValueError, OSError) as e:
        print(f"realtime-push: error: {e}", file=err)
        return EXIT_ERROR


def _subscribe(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``subscribe``, the one command that needs Twisted, imports it only here: this module stays stdlib-only."""
    try:
        from realtime.client.subscriber import follow

        return follow(args.wsUrl, args.channels, args.since, args.first_message, out, err)
    except KeyboardInterrupt:
        # ^C before the reactor took SIGINT over (while Twisted loads) is an interrupt like any other
        return 0
