"""
Several real ``twistd -n realtime`` nodes on one real Redis, and the clients
and tools the scale-out and fault tests drive them with.

  - L{startNodes}: nodes started side by side (each start is mostly imports,
    so starting them together saves seconds on a loaded machine);
  - L{ChannelClient}: a channels-protocol client whose frames are read by a
    thread as they come, so a test can publish from other threads and then
    wait for what it expects, with a deadline, never for a time;
  - L{PubSubSilencer}: a TCP proxy in front of Redis that, asked to, keeps
    the pub/sub connections open but stops forwarding what Redis sends on
    them - a half-open connection, as a NAT or proxy that lost the flow makes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from websockets.sync.client import ClientConnection, connect

from realtime.broker.redismessages import ChannelNames
from tests.serverprocess import ServerProcess, api, waitUntil

__all__ = ["NODE_ARGS", "startNodes", "ChannelClient", "PubSubSilencer", "readiness", "metric", "push", "online", "held"]

#: channels with history, and one with presence, that every client may use
NODE_ARGS = (
    "--auth",
    "anonymous",
    "--routing",
    "channels",
    "--namespace",
    "news:*:public=true:publish=true:history=1000:ttl=3600",
    "--namespace",
    "room:*:public=true:presence=true:history=0",
)


def startNodes(count: int, broker: str, store: str | None = None, *extra: str) -> list[ServerProcess]:
    """
    C{count} nodes on C{broker} (and C{store}, the broker's URL unless
    given), started side by side; the caller stops them.
    """
    nodes = [ServerProcess(*NODE_ARGS, "--broker", broker, "--store", store or broker, *extra) for _ in range(count)]
    failures: list[BaseException] = []

    def start(node: ServerProcess) -> None:
        try:
            node.start(timeout=60)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        for node in nodes:
            node.stop()
        raise failures[0]
    return nodes


class ChannelClient:
    """
    One channels-protocol connection (with C{?identity=1}, so it knows its
    uid), read by a thread into C{frames}.
    """

    def __init__(self, node: ServerProcess) -> None:
        self.ws: ClientConnection = connect(node.url("/ws?identity=1"), open_timeout=20).__enter__()
        self.frames: list[dict[str, Any]] = []
        self.closed: str | None = None
        self._nextId = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.uid: str = self.waitFor(lambda f: f.get("type") == "identity")["uid"]

    def _read(self) -> None:
        try:
            for text in self.ws:
                frame = json.loads(text)
                with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except Exception as e:  # the connection's end is what we report
            reason: str = repr(e)
        else:
            reason = "closed"
        with self._changed:
            self.closed = reason
            self._changed.notify_all()

    def waitFor(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """
        The first frame satisfying C{predicate}, waiting for it.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in self.frames:
                    if predicate(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed is not None:
                    raise AssertionError(
                        f"no such frame (connection: {self.closed or 'open'}); got {self.frames[-20:]}"
                    )
                self._changed.wait(min(remaining, 0.5))

    def waitForCount(self, select: Callable[[dict[str, Any]], bool], count: int, timeout: float = 30.0) -> list[Any]:
        """
        Wait until C{count} frames satisfy C{select}; return them all.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := [f for f in self.frames if select(f)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed is not None:
                    raise AssertionError(
                        f"{len(found)} of {count} frames (connection: {self.closed or 'open'}): {found}"
                    )
                self._changed.wait(min(remaining, 0.5))
            return found

    def request(self, op: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """
        Send a request and wait for its reply (the frames in between stay
        in C{frames}).
        """
        with self._changed:
            self._nextId += 1
            requestId = self._nextId
        self.ws.send(json.dumps({"id": requestId, "op": op, **fields}))
        return self.waitFor(lambda f: f.get("type") == "reply" and f.get("id") == requestId, timeout)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        with self._changed:
            return [f for f in self.frames if f.get("type") == "message" and f.get("channel") == channel]

    def pushes(self) -> list[Any]:
        with self._changed:
            return [json.loads(f["data"]) for f in self.frames if f.get("type") == "push"]

    def close(self) -> None:
        self.ws.close()


def push(node: ServerProcess, uid: str, data: object) -> tuple[int, dict[str, Any]]:
    """
    C{POST /api/push} of C{data} to C{uid}: the status and the answer.
    """
    return api(node, "POST", "/api/push", json.dumps({"uid": uid, "data": data}).encode())


def online(node: ServerProcess, uid: str) -> int:
    """
    How many connections C{uid} holds in the cluster, as C{node} says.
    """
    count: int = api(node, "GET", f"/api/online?uid={uid}")[1]["online"][uid]
    return count


def held(redis: Any, node: ServerProcess, uid: str, connections: int = 1) -> bool:
    """
    Whether C{node} counts C{connections} connections of C{uid}, and Redis
    holds the subscription to the uid's channel (on a cluster, on the master
    of its slot).  A node counts a connection only once Redis confirmed
    that subscription, so the second holds whenever the first does: the
    check says so when it does not.
    """
    if online(node, uid) != connections:
        return False
    channel = ChannelNames().uid(uid)
    assert redis.subscribers(channel)[channel] > 0, f"{uid} counted online before its subscription"
    return True


def readiness(node: ServerProcess) -> tuple[int, dict[str, Any]]:
    """
    C{GET /readyz}: the status and the checks.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['port']}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(node: ServerProcess, name: str) -> float | None:
    """
    The value of the first sample of C{name} on C{/metrics}, if any.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['port']}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def waitForReadiness(node: ServerProcess, status: int, timeout: float = 20.0) -> dict[str, Any]:
    """
    Wait until C{/readyz} answers C{status}; return its body.
    """
    seen: list[dict[str, Any]] = []

    def answered() -> bool:
        code, body = readiness(node)
        seen[:] = [body]
        return code == status

    waitUntil(answered, timeout)
    return seen[0]


class PubSubSilencer:
    """
    A TCP proxy to the Redis on C{port}, one thread pair per connection.

    A connection that sent C{SUBSCRIBE} is a pub/sub connection; after
    L{silence} what Redis sends on the pub/sub connections open then is
    dropped (the client's bytes still reach Redis, and Redis still counts
    the subscriber), while connections made afterwards work.
    """

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pubsub: set[int] = set()
        self._silenced: set[int] = set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, server]
            key = id(client)
            threading.Thread(target=self._pipe, args=(client, server, key, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, key, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, key: int, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if upstream and b"SUBSCRIBE" in data.upper():
                        self._pubsub.add(key)
                    if not upstream and key in self._silenced:
                        continue
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def silence(self) -> int:
        """
        Stop forwarding to the pub/sub connections open now; how many.
        """
        with self._lock:
            self._silenced |= self._pubsub
            return len(self._pubsub)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()
