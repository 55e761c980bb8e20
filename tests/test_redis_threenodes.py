"""
Three real nodes act as one server: clients spread over them, pushes (HTTP
API and line port) and channel publishes (HTTP API and clients) taken by
each, and every message reaches every addressee exactly once, in the order
each publisher sent it - on one Redis, and on a Redis Cluster of three
masters (the same test body, over each topology).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.redisnodes import ChannelClient, held, push, startNodes
from tests.redisserver import RedisClusterServers, RedisServer
from tests.serverprocess import ServerProcess, linePush, publish, waitUntil

#: messages each publisher sends
PER_PUBLISHER = 15
CHANNEL = "news:three"


class ThreeNodesMixin:
    """
    The test body; a subclass says which Redis it runs on.
    """

    makeRedis: Callable[[], Any]
    redis: Any
    nodes: list[ServerProcess]

    @classmethod
    def setUpClass(cls) -> None:
        cls.redis = cls.makeRedis()
        try:
            cls.nodes = startNodes(3, cls.redis.url)
        except BaseException:
            cls.redis.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        for node in cls.nodes:
            node.stop()
        cls.redis.cleanup()

    def clients(self) -> list[ChannelClient]:
        """
        Two clients on each node, each subscribed to the channel, each known
        online to every node and its uid subscribed in Redis before the test
        pushes.
        """
        clients = [ChannelClient(node) for node in self.nodes for _ in range(2)]
        for client in clients:
            self.addCleanup(client.close)
            assert client.request("subscribe", channel=CHANNEL)["ok"]
        for node in self.nodes:
            for client in clients:
                waitUntil(lambda node=node, uid=client.uid: held(self.redis, node, uid), timeout=20)
        return clients

    def test_everyMessageOnceInOrder(self) -> None:
        """
        Twelve publishers at once - per node, pushes to every uid through
        the HTTP API and through the line port, channel publishes through
        the HTTP API and from a client - and every client receives each
        push to its uid and each channel message exactly once, in the order
        its publisher sent them; every push is answered delivered.
        """
        clients = self.clients()
        uids = [c.uid for c in clients]
        answers: list[Any] = []
        failures: list[BaseException] = []

        def httpPushes(node: ServerProcess, name: str) -> None:
            for seq in range(PER_PUBLISHER):
                for uid in uids:
                    status, body = push(node, uid, {"pub": name, "seq": seq})
                    answers.append((name, status, body.get("status")))

        def linePushes(node: ServerProcess, name: str) -> None:
            lines = [
                json.dumps({"uid": uid, "pub": name, "seq": seq}).encode() + b"\n"
                for seq in range(PER_PUBLISHER)
                for uid in uids
            ]
            answers.extend((name, a) for a in linePush(node.ports["push-port"], *lines))

        def apiPublishes(node: ServerProcess, name: str) -> None:
            for seq in range(PER_PUBLISHER):
                publish(node, CHANNEL, {"pub": name, "seq": seq})

        def clientPublishes(node: ServerProcess, name: str) -> None:
            publisher = ChannelClient(node)
            try:
                for seq in range(PER_PUBLISHER):
                    reply = publisher.request("publish", channel=CHANNEL, data={"pub": name, "seq": seq})
                    assert reply["ok"], reply
            finally:
                publisher.close()

        def guarded(work: Callable[..., None], *args: Any) -> Callable[[], None]:
            def run() -> None:
                try:
                    work(*args)
                except BaseException as e:
                    failures.append(e)

            return run

        threads = [
            threading.Thread(target=guarded(work, node, f"{work.__name__}-{i}"))
            for i, node in enumerate(self.nodes)
            for work in (httpPushes, linePushes, apiPublishes, clientPublishes)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(failures, [])
        self.assertEqual({a[1:] for a in answers}, {(200, "delivered"), (b"ok",)}, "every push answered delivered")

        pushers = [f"{w}-{i}" for i in range(3) for w in ("httpPushes", "linePushes")]
        publishers = [f"{w}-{i}" for i in range(3) for w in ("apiPublishes", "clientPublishes")]
        for client in clients:
            client.waitForCount(lambda f: f.get("type") == "push", len(pushers) * PER_PUBLISHER)
            client.waitForCount(
                lambda f: f.get("type") == "message" and f.get("channel") == CHANNEL, len(publishers) * PER_PUBLISHER
            )
        for client in clients:
            pushed: dict[str, list[int]] = defaultdict(list)
            for data in client.pushes():
                self.assertEqual(data["uid"] if "uid" in data else client.uid, client.uid)
                pushed[data["pub"]].append(data["seq"])
            self.assertEqual(dict(pushed), {p: list(range(PER_PUBLISHER)) for p in pushers})
            published: dict[str, list[int]] = defaultdict(list)
            messages = client.messages(CHANNEL)
            for message in messages:
                published[message["data"]["pub"]].append(message["data"]["seq"])
            self.assertEqual(dict(published), {p: list(range(PER_PUBLISHER)) for p in publishers})
            offsets = [m["offset"] for m in messages]
            self.assertEqual(offsets, sorted(set(offsets)), "offsets only go up")


class OneRedisTests(ThreeNodesMixin, SynchronousTestCase):
    """
    Three nodes on one Redis.
    """

    makeRedis = RedisServer


class RedisClusterTests(ThreeNodesMixin, SynchronousTestCase):
    """
    Three nodes on a Redis Cluster of three masters (C{redis+cluster://}).
    """

    makeRedis = RedisClusterServers
