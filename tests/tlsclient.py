"""
A ``wss://`` client for the tests that never enters one TLS session from two
threads at once.

websockets' sync client reads in a thread of its own while the caller's
thread writes, both on one ``ssl.SSLSocket``. OpenSSL forbids two threads in
one session (openssl/openssl#20446). Under TLS 1.3 the reader takes the
server's session tickets just as the writer sends the opening handshake, and
now and then the request is lost: through nginx, with the other core busy,
about one connection in 200 to 300 got no answer, and nginx closed it 60 s
later ("client timed out while waiting for request"). CI failed on it once.

Here the session lives in memory BIOs behind a lock that is never held while
waiting on the network (cpp-httplib fixed the same race this way), and
websockets gets it as an already connected socket.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

_CHUNK = 65536


class SerializedTLSSocket:
    """
    The part of a socket websockets' sync client uses, over TLS: C{recv},
    C{send}, C{sendall}; the rest (C{fileno}, C{shutdown}, C{settimeout}...)
    is the TCP socket's.
    """

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
        self._raw = raw
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._session = context.wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)
        self._lock = threading.Lock()  # the session's
        self._sending = threading.Lock()  # held while the records written are sent
        self._ended = False
        while not self._step(self._session.do_handshake)[0]:
            self._feed()

    def _step(self, operation: Any, *args: Any) -> tuple[bool, Any]:
        """
        Run one session operation, and send what it wrote: whether it ran
        to the end (not waiting for the server's bytes), and its result.
        """
        with self._lock:
            try:
                done, result = True, operation(*args)
            except ssl.SSLWantReadError:
                done, result = False, None
            owed = self._outgoing.pending
        if owed:
            self._flush()
        return done, result

    def _flush(self) -> None:
        """
        Send what the session wrote. Whoever flushes takes all of it, in
        the order it was written, so the reader (answering the server) and
        the writer never put records on the wire out of order.
        """
        with self._sending:
            with self._lock:
                data = self._outgoing.read()
            if data:
                self._raw.sendall(data)

    def _feed(self) -> bool:
        """
        Hand the session what the server sent (waiting for it, unlocked);
        C{False} at the end of the stream.
        """
        data = self._raw.recv(_CHUNK)
        with self._lock:
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
        return bool(data)

    def _plainText(self) -> bytes | None:
        """
        All the plain text the session holds; C{None} if it holds none and
        needs more bytes; C{b""} at the end of the stream.
        """
        chunks: list[bytes] = []
        while not self._ended:
            try:
                chunk = self._session.read(_CHUNK)
            except ssl.SSLWantReadError:
                return b"".join(chunks) or None
            except ssl.SSLEOFError:  # the server closed TCP without close_notify
                self._ended = True
            else:
                if chunk:
                    chunks.append(chunk)
                else:
                    # The server's close_notify, maybe in the very bytes of
                    # its last message. websockets would not ask again (the
                    # socket has nothing more), so answer it: a server that
                    # waits for ours (Twisted's TLS does) then closes TCP,
                    # and the EOF wakes websockets.
                    self._ended = True
                    self._session.unwrap()
        return b"".join(chunks)

    def recv(self, bufsize: int) -> bytes:
        """
        Everything decrypted so far, once there is something. websockets
        waits on the TCP socket before it calls this, so no whole record may
        be left behind in the session: it would wait for it forever.
        """
        while True:
            _, text = self._step(self._plainText)
            if text is not None:
                return text
            if not self._feed():
                return self._step(self._plainText)[1] or b""

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done, written = self._step(self._session.write, view)
            assert done, "the server asked for a renegotiation, which this client does not do"
            view = view[written:]

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def connectTLS(url: str, context: ssl.SSLContext, open_timeout: float = 10.0, **kwargs: Any) -> ClientConnection:
    """
    websockets' C{connect(url, ssl=context)} for a C{wss://} URL, over a
    L{SerializedTLSSocket}.
    """
    parts = urlsplit(url)
    assert parts.scheme == "wss" and parts.hostname and parts.port, url
    raw = socket.create_connection((parts.hostname, parts.port), timeout=open_timeout)
    try:
        tls = SerializedTLSSocket(raw, context, parts.hostname)
    except BaseException:
        raw.close()
        raise
    raw.settimeout(None)
    plain = parts._replace(scheme="ws").geturl()
    return connect(plain, sock=tls, open_timeout=open_timeout, **kwargs)
