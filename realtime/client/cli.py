"""
The ``realtime-push`` command: the blocking clients from a shell::

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

Standard library only, like L{realtime.client.blocking}: C{subscribe}, the
one command that needs Twisted, imports it when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence, TextIO

from realtime.client.blocking import API_KEY_FILE, DEFAULT_URL, HttpPushClient, LinePushClient, PushError, findApiKey

__all__ = ["main", "parseData", "saveBackup"]

DEFAULT_LINE = "127.0.0.1:5678"
DEFAULT_WS_URL = "ws://127.0.0.1:8080/ws"

#: the command's exit statuses: delivered, neither delivered nor queued,
#: an error (usage, connection, refusal), queued for an offline uid
EXIT_DELIVERED, EXIT_UNDELIVERED, EXIT_ERROR, EXIT_QUEUED = 0, 1, 2, 3


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
        return _viaLine(args, target, out)
    return _viaHttp(args, target, out)


def _viaLine(args: argparse.Namespace, target: Any, out: TextIO) -> int:
    host, port = _lineAddress(args.line or os.environ.get("REALTIME_LINE") or DEFAULT_LINE)
    data = parseData(args.data)
    fields = data if isinstance(data, dict) else {"data": data}
    with LinePushClient(host, port, args.timeout) as line:
        word = line.push(target, fields) if args.command == "push" else line.broadcast(fields)
    print(word, file=out)
    return EXIT_DELIVERED if word.delivered else EXIT_QUEUED if word.queued else EXIT_UNDELIVERED


def _viaHttp(args: argparse.Namespace, target: Any, out: TextIO) -> int:
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
            online = api.online(*args.uids)["online"]
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
        from realtime.client.follow import follow

        return follow(args.wsUrl, args.channels, args.since, args.first_message, out, err)
    except KeyboardInterrupt:
        # ^C before the reactor took SIGINT over (while Twisted loads) is an interrupt like any other
        return 0
