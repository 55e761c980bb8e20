"""
The bench contract on asyncio ``websockets``, written the way its
documentation suggests (``websockets.broadcast`` for fan-out).

- WebSocket on ``--port``: the first text message is the uid;
- ``GET /api/stats`` on the same port: ``{"connections": <authenticated>}``;
- the line-JSON push port: ``{"uid": ...}`` or ``{"broadcast": true, ...}``
  per line, answered ``ok`` / ``fail`` per line, in order; clients receive
  the line itself.

Prints ``READY ws=<port> push=<port> stats=<port>`` once both listen.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import signal

from websockets import broadcast
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

byUid: dict[str, set[ServerConnection]] = {}
authenticated = 0


def stats(connection: ServerConnection, request: Request) -> Response | None:
    """
    Answer ``GET /api/stats`` before the upgrade; let WebSocket requests through.
    """
    if request.path != "/api/stats":
        return None
    body = json.dumps({"connections": authenticated, "uids": len(byUid)}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(http.HTTPStatus.OK.value, "OK", headers, body)


async def session(connection: ServerConnection) -> None:
    """
    The first message is the uid; later ones are ignored (push only).
    """
    global authenticated
    try:
        first = await connection.recv()
    except Exception:
        return
    if not isinstance(first, str):
        await connection.close(4001, "first message must be text")
        return
    uid = first.strip()
    byUid.setdefault(uid, set()).add(connection)
    authenticated += 1
    try:
        async for _ in connection:
            pass
    except Exception:
        pass
    finally:
        peers = byUid[uid]
        peers.discard(connection)
        if not peers:
            del byUid[uid]
        authenticated -= 1


def push(line: str) -> str:
    """
    Send C{line} where it asks; the answer line.
    """
    try:
        message = json.loads(line)
    except ValueError:
        return "error: invalid JSON"
    if not isinstance(message, dict):
        return "error: expected a JSON object"
    if message.get("broadcast") is True:
        targets = [c for peers in byUid.values() for c in peers]
    elif isinstance(message.get("uid"), (str, int)):
        targets = list(byUid.get(str(message["uid"]), ()))
    else:
        return 'error: missing "uid" (or "broadcast": true)'
    broadcast(targets, line)
    return "ok" if targets else "fail"


async def pushPort(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """
    One backend connection: a line in, an answer out, in order.
    """
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                break
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line.strip():
                continue
            writer.write(push(line).encode() + b"\n")
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push-port", type=int, default=0)
    args = parser.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(session, args.host, args.port, process_request=stats, backlog=511) as server:
        lines = await asyncio.start_server(pushPort, args.host, args.push_port, limit=2 * 1024 * 1024, backlog=511)
        wsPort = server.sockets[0].getsockname()[1]
        print(f"READY ws={wsPort} push={lines.sockets[0].getsockname()[1]} stats={wsPort}", flush=True)
        await stop
        lines.close()


if __name__ == "__main__":
    asyncio.run(main())
