"""
Delivery you can trust, end to end: a real server with the SQLite store,
real sockets, an independent WebSocket client, and publishers that do not
stop while a subscriber resumes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import ClientConnection, connect

from tests.serverprocess import ServerProcess, api, linePush, publish, waitUntil

CHANNELS = (
    "--auth",
    "anonymous",
    "--routing",
    "channels",
    "--namespace",
    "news:*:public=true:history=1000:ttl=3600",
    "--namespace",
    "short:*:public=true:history=10:ttl=3600",
)


class ChannelClient:
    """
    A channels-protocol client over the C{websockets} library: requests
    with ids, and the messages that arrive in between.
    """

    def __init__(self, url: str) -> None:
        self.ws: ClientConnection = connect(url, open_timeout=10).__enter__()
        self.nextId = 0
        self.messages: list[dict[str, Any]] = []

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """
        Send a request and read until its reply, keeping the messages seen
        before it.
        """
        self.nextId += 1
        self.ws.send(json.dumps({"id": self.nextId, "op": op, **fields}))
        while True:
            frame = json.loads(self.ws.recv(timeout=10))
            if frame.get("type") == "reply" and frame.get("id") == self.nextId:
                return frame
            self.messages.append(frame)

    def readUntil(self, predicate: Any, timeout: float = 20.0) -> None:
        """
        Read messages until one satisfies C{predicate}.
        """
        deadline = time.monotonic() + timeout
        while not (self.messages and predicate(self.messages[-1])):
            self.messages.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def close(self) -> None:
        self.ws.close()


class Publisher(threading.Thread):
    """
    Publishes ``{"seq": n}`` as fast as the API answers until stopped, then
    one ``{"done": true}``.
    """

    def __init__(self, server: ServerProcess, channel: str, start: int) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.channel = channel
        self.seq = start
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            publish(self.server, self.channel, {"seq": self.seq})
            self.seq += 1
        publish(self.server, self.channel, {"done": True})


class ResumeTests(SynchronousTestCase):
    """
    A subscriber that was away gets what it missed, exactly once, in order.
    """

    def setUp(self) -> None:
        self.server = ServerProcess(*CHANNELS).start()
        self.addCleanup(self.server.stop)

    def test_resumeWhilePublishing(self) -> None:
        """
        Disconnect, 50 messages published, reconnect from the last offset
        while a publisher keeps publishing: exactly those 50, in order, then
        every live one, nothing lost or doubled at the seam.
        """
        reader = ChannelClient(self.server.url("/ws"))
        first = reader.request("subscribe", channel="news:live")["result"]
        for seq in range(5):
            publish(self.server, "news:live", {"seq": seq})
        reader.readUntil(lambda m: m.get("data", {}).get("seq") == 4)
        last = reader.messages[-1]
        self.assertEqual((last["epoch"], last["offset"]), (first["epoch"], 5))
        reader.close()

        for seq in range(5, 55):
            publish(self.server, "news:live", {"seq": seq})
        publisher = Publisher(self.server, "news:live", 55)
        publisher.start()
        self.addCleanup(publisher.stopping.set)
        waitUntil(lambda: publisher.seq > 60, timeout=10)

        back = ChannelClient(self.server.url("/ws"))
        reply = back.request("subscribe", channel="news:live", since={"epoch": last["epoch"], "offset": 5})
        result = reply["result"]
        self.assertTrue(result["recovered"])
        self.assertGreaterEqual(result["missed"], 50)
        waitUntil(lambda: publisher.seq > result["offset"] + 30, timeout=20)
        publisher.stopping.set()
        publisher.join(20)
        back.readUntil(lambda m: m.get("data", {}).get("done"))

        got = back.messages
        self.assertEqual([m["data"]["seq"] for m in got[:50]], list(range(5, 55)))
        offsets = [m["offset"] for m in got]
        self.assertEqual(offsets, list(range(6, 6 + len(got))), "offsets must be consecutive: no gap, no double")
        seqs = [m["data"]["seq"] for m in got[:-1]]
        self.assertEqual(seqs, list(range(5, 5 + len(seqs))))
        self.assertEqual(seqs[-1], publisher.seq - 1)
        self.assertEqual({m["epoch"] for m in got}, {last["epoch"]})
        back.close()

    def test_outOfRange(self) -> None:
        """
        A position the history no longer covers, or of another epoch, is
        reported as not recovered, with the current position.
        """
        for seq in range(30):
            epoch = publish(self.server, "short:x", {"seq": seq})["epoch"]
        client = ChannelClient(self.server.url("/ws"))
        for since in ({"epoch": epoch, "offset": 5}, {"epoch": "not-" + epoch, "offset": 29}):
            reply = client.request("subscribe", channel="short:x", since=since)
            self.assertEqual(
                reply["result"], {"channel": "short:x", "epoch": epoch, "offset": 30, "recovered": False}
            )
            client.request("unsubscribe", channel="short:x")
        self.assertEqual(client.messages, [])
        reply = client.request("subscribe", channel="short:x", since={"epoch": epoch, "offset": 25})
        self.assertEqual((reply["result"]["recovered"], reply["result"]["missed"]), (True, 5))
        self.assertEqual([m["data"]["seq"] for m in client.messages], [25, 26, 27, 28, 29])
        client.close()


class RestartTests(SynchronousTestCase):
    """
    The SQLite store keeps history across a C{kill -TERM} and a restart.
    """

    def test_resumeAcrossRestart(self) -> None:
        """
        Messages stored before the restart and published after it are all
        recovered, in order, in the same epoch.
        """
        server = ServerProcess(*CHANNELS).start()
        cwd = server.cwd
        try:
            reader = ChannelClient(server.url("/ws"))
            reader.request("subscribe", channel="news:restart")
            for seq in range(10):
                publish(server, "news:restart", {"seq": seq})
            reader.readUntil(lambda m: m.get("data", {}).get("seq") == 9)
            position = {"epoch": reader.messages[-1]["epoch"], "offset": reader.messages[-1]["offset"]}
            reader.close()
            for seq in range(10, 30):
                publish(server, "news:restart", {"seq": seq})
        finally:
            server.stop()
        self.assertTrue(os.path.exists(os.path.join(cwd, "realtime.sqlite3")))

        server = ServerProcess(*CHANNELS, cwd=cwd).start()
        try:
            for seq in range(30, 35):
                publish(server, "news:restart", {"seq": seq})
            back = ChannelClient(server.url("/ws"))
            result = back.request("subscribe", channel="news:restart", since=position)["result"]
            self.assertEqual((result["recovered"], result["missed"], result["epoch"]), (True, 25, position["epoch"]))
            self.assertEqual([m["data"]["seq"] for m in back.messages], list(range(10, 35)))
            self.assertEqual([m["offset"] for m in back.messages], list(range(11, 36)))
            back.close()
        finally:
            server.stop()


class OfflineTests(SynchronousTestCase):
    """
    A push to a known uid without a connection waits for it.
    """

    def test_queuedThenDeliveredOnce(self) -> None:
        """
        The line port answers ``queued``; the uid's next connection gets the
        pushes in order, once, before anything pushed after it.
        """
        server = ServerProcess().start()
        self.addCleanup(server.stop)
        online = lambda: api(server, "GET", "/api/online?uid=phone")[1]["online"]["phone"]  # noqa: E731
        with connect(server.url("/")) as ws:
            ws.send("phone")
            waitUntil(lambda: online() == 1)
        waitUntil(lambda: online() == 0)
        lines = [json.dumps({"uid": "phone", "n": n}).encode() + b"\n" for n in range(3)]
        self.assertEqual(linePush(server.ports["push-port"], *lines), [b"queued"] * 3)
        status, body = api(server, "POST", "/api/push", b'{"uid": "phone", "data": "via http"}')
        self.assertEqual((body["status"], body["queued"]), ("queued", ["phone"]))
        self.assertEqual(linePush(server.ports["push-port"], b'{"uid": "never-connected"}\n'), [b"fail"])
        with connect(server.url("/")) as ws:
            ws.send("phone")
            got = [ws.recv(timeout=10) for _ in range(4)]
            self.assertEqual([json.loads(g).get("n") for g in got[:3]], [0, 1, 2])
            self.assertEqual(got[3], "via http")
            self.assertEqual(linePush(server.ports["push-port"], b'{"uid": "phone", "n": 9}\n'), [b"ok"])
            self.assertEqual(json.loads(ws.recv(timeout=10))["n"], 9)
        with connect(server.url("/")) as ws:
            ws.send("phone")
            waitUntil(lambda: online() == 1)
            with self.assertRaises(TimeoutError):
                ws.recv(timeout=0.5)

