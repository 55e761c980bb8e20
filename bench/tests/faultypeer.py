"""
A peer that breaks the bench contract on purpose, to prove the load
generator notices: its checks are only worth something if a server that
fragments, reorders, drops or corrupts messages makes them fail (or, for
fragmentation, which is legal, pass).

    python faultypeer.py --mode fragment|reorder|drop|corrupt|none

Same contract as bench/peers/python-websockets (uid as first message, line
port, GET /api/stats); prints ``READY ws=.. push=.. stats=..``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

byUid: dict[str, ServerConnection] = {}
held: dict[ServerConnection, str] = {}
counts: dict[ServerConnection, int] = {}
mode = "none"


def stats(connection: ServerConnection, request: Request) -> Response | None:
    """
    ``GET /api/stats`` before the upgrade.
    """
    if request.path != "/api/stats":
        return None
    body = json.dumps({"connections": len(byUid)}).encode()
    return Response(200, "OK", Headers([("Content-Length", str(len(body)))]), body)


async def session(connection: ServerConnection) -> None:
    """
    The first message is the uid.
    """
    uid = str(await connection.recv()).strip()
    byUid[uid] = connection
    try:
        await connection.wait_closed()
    finally:
        byUid.pop(uid, None)


async def deliver(connection: ServerConnection, line: str) -> None:
    """
    Send C{line} to one connection, misbehaving as C{mode} says.
    """
    counts[connection] = n = counts.get(connection, 0) + 1
    if mode == "fragment":
        third = max(1, len(line) // 3)
        await connection.send([line[:third], line[third : 2 * third], line[2 * third :]])
    elif mode == "reorder" and n % 2 == 1:
        held[connection] = line
    elif mode == "reorder":
        await connection.send(line)
        await connection.send(held.pop(connection))
    elif mode == "drop" and n % 7 == 0:
        pass
    elif mode == "corrupt" and n % 5 == 0:
        await connection.send(line[:-3] + ("A" if line[-3] != "A" else "B") + line[-2:])
    else:
        await connection.send(line)


async def pushPort(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """
    One line in, one answer out.
    """
    while raw := await reader.readline():
        line = raw.decode().rstrip("\r\n")
        message = json.loads(line)
        if message.get("broadcast"):
            targets = list(byUid.values())
        else:
            targets = [byUid[message["uid"]]] if message["uid"] in byUid else []
        for connection in targets:
            await deliver(connection, line)
        writer.write(b"ok\n" if targets else b"fail\n")
    writer.close()


async def main() -> None:
    global mode
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="none", choices=["none", "fragment", "reorder", "drop", "corrupt"])
    mode = parser.parse_args().mode
    async with serve(session, "127.0.0.1", 0, process_request=stats, compression=None) as server:
        lines = await asyncio.start_server(pushPort, "127.0.0.1", 0)
        ws = server.sockets[0].getsockname()[1]
        print(f"READY ws={ws} push={lines.sockets[0].getsockname()[1]} stats={ws}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
