"""
The soak's wire: a minimal asyncio WebSocket client, the line port and the
HTTP API, standard library only (``bench/soak.py`` drives them).

The WebSocket client reads every frame itself, so a graceful close can be
read to its end (the server's close frame): everything the server accepted
for a connection before it is seen, which is what lets the soak account for
every message.  Frames are masked with a zero key (legal, and the payload
needs no copying); no extension is offered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 1, 8, 9, 10

#: seconds any single wait of the soak may take
TIMEOUT = 15.0


def frame(payload: bytes, opcode: int = OP_TEXT, fin: bool = True) -> bytes:
    """
    A client frame masked with the zero key.
    """
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def upgrade(path: str = "/") -> bytes:
    """
    A WebSocket opening handshake.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class WebSocket:
    """
    One client connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, uid: str) -> WebSocket:
        """
        Connect, upgrade and authenticate as C{uid} (uid-first-packet).
        """
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        writer.write(upgrade())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))
        connection = cls(reader, writer)
        connection.send(uid.encode())
        return connection

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        self.writer.write(frame(payload, opcode))

    def sendJson(self, value: Any) -> None:
        self.send(json.dumps(value, separators=(",", ":")).encode())

    async def read(self) -> tuple[int, bytes]:
        """
        The next frame as C{(opcode, payload)}; pings are answered.
        """
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(n) if n else b""
            opcode = b0 & 0x0F
            if opcode == OP_PING:
                self.send(payload, OP_PONG)
                continue
            return opcode, payload

    def startClose(self) -> None:
        self.send(struct.pack("!H", 1000), OP_CLOSE)

    def abort(self) -> None:
        self.writer.transport.abort()


class LinePort:
    """
    The line-JSON push port: lines out, answers back in order.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> LinePort:
        return cls(*await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT))

    def push(self, value: Any) -> None:
        self.writer.write(json.dumps(value, separators=(",", ":")).encode() + b"\n")

    async def answer(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        if not line:
            raise ConnectionError("line port closed")
        return line.decode().strip()


class HttpApi:
    """
    One keep-alive connection to the HTTP API.
    """

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """
        The status and the decoded JSON answer.
        """
        if self.streams is None:
            self.streams = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), TIMEOUT)
        reader, writer = self.streams
        data = b"" if body is None else json.dumps(body).encode()
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
        except BaseException:
            self.close()
            raise
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None
