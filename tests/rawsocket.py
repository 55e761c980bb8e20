"""
A blocking WebSocket client over a real socket that sends exactly the bytes
a test builds, for the conformance smoke tests.

Client libraries refuse to send what these tests need (reserved bits without
an extension, reserved opcodes, bad close codes, a text message cut inside a
code point, a hand-made decompression bomb) and hide what the server answered
(the exact close code, a pong's position among data frames).  This one sends
raw frames and reads raw frames; every wait is a socket read with a deadline,
so a test waits exactly as long as the server takes and never sleeps.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass

from tests.support import clientFrame, handshake, splitResponse

#: how long a test waits for the server to say something
TIMEOUT = 5.0

#: the extension offer of the deflate tests (browsers send the same)
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0, 1, 2
OP_CLOSE, OP_PING, OP_PONG = 8, 9, 10


@dataclass(frozen=True)
class ServerFrame:
    """
    One frame as the server wrote it.
    """

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0

    def closeCode(self) -> int | None:
        """
        The status code of a close frame (C{None} if it carries none).
        """
        assert self.opcode == OP_CLOSE, f"not a close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def frame(payload: bytes, opcode: int = OP_TEXT, fin: bool = True, rsv: int = 0) -> bytes:
    """
    A masked client frame, with reserved bits C{rsv} (4 = RSV1 ... 1 = RSV3).
    """
    data = clientFrame(payload, opcode=opcode, fin=fin)
    return bytes((data[0] | (rsv << 4),)) + data[1:]


def closePayload(code: int, reason: bytes = b"") -> bytes:
    """
    The payload of a close frame.
    """
    return struct.pack("!H", code) + reason


def deflate(payload: bytes) -> bytes:
    """
    C{payload} compressed as one RFC 7692 message (raw deflate, sync flush,
    the trailing C{00 00 ff ff} removed), with a fresh context.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def inflate(payload: bytes) -> bytes:
    """
    A compressed server message (the server may use context takeover, so a
    test compares only the first compressed message of a connection).
    """
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


class RawClient:
    """
    One connection: C{send} bytes, C{read} frames, C{closed} to see the end.
    """

    def __init__(self, port: int, path: str = "/", extensions: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        headers = {"Sec-WebSocket-Extensions": extensions} if extensions else None
        self.sock.sendall(handshake(path, headers))
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._fill(time.monotonic() + TIMEOUT)
        head, self._buffer = splitResponse(self._buffer)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.responseHead = head.decode("latin-1")

    def extensions(self) -> str:
        """
        What the server answered in C{Sec-WebSocket-Extensions} ("" if none).
        """
        for line in self.responseHead.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                return value.strip()
        return ""

    def send(self, *frames: bytes) -> None:
        """
        Write C{frames} in one C{send}, so the server reads them together.
        """
        self.sock.sendall(b"".join(frames))

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"server said nothing more within {TIMEOUT}s")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        self._buffer += data
        return bool(data)

    def _parse(self) -> ServerFrame | None:
        data = self._buffer
        if len(data) < 2:
            return None
        b0, b1 = data[0], data[1]
        assert not b1 & 0x80, "server frames are never masked"
        n, offset = b1 & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                return None
            (n,), offset = struct.unpack("!H", data[2:4]), 4
        elif n == 127:
            if len(data) < 10:
                return None
            (n,), offset = struct.unpack("!Q", data[2:10]), 10
        if len(data) < offset + n:
            return None
        self._buffer = data[offset + n :]
        return ServerFrame(b0 & 0x0F, data[offset : offset + n], bool(b0 & 0x80), (b0 >> 4) & 0x07)

    def read(self) -> ServerFrame:
        """
        The next frame; C{EOFError} if the server closed the TCP connection.
        """
        deadline = time.monotonic() + TIMEOUT
        while (parsed := self._parse()) is None:
            if not self._fill(deadline):
                raise EOFError(f"connection closed with {len(self._buffer)} bytes of a frame left")
        return parsed

    def readMessage(self) -> tuple[int, bytes]:
        """
        The next data message (C{(opcode, payload)}), reassembled; control
        frames before or inside it are not expected.
        """
        first = self.read()
        assert first.opcode in (OP_TEXT, OP_BINARY), first
        parts = [first.payload]
        last = first
        while not last.fin:
            last = self.read()
            assert last.opcode == OP_CONTINUATION, last
            parts.append(last.payload)
        payload = b"".join(parts)
        return first.opcode, inflate(payload) if first.rsv & 4 else payload

    def closeCode(self) -> int | None:
        """
        Read the server's close frame, which must come next; answer it, and
        return its code.
        """
        got = self.read()
        assert got.opcode == OP_CLOSE, f"expected a close frame, got {got}"
        try:
            self.sock.sendall(frame(got.payload[:2], OP_CLOSE))
        except OSError:
            pass
        return got.closeCode()

    def closed(self) -> bool:
        """
        Whether the server has closed the TCP connection (waiting for it).
        """
        deadline = time.monotonic() + TIMEOUT
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """
        Drop the socket.
        """
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
