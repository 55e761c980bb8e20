"""
Real nodes survive what goes wrong around them: Redis stopped and started
again (keeping its data, or losing it), a pub/sub connection that stays open
but delivers nothing, and a node killed with SIGKILL - each against real
C{redis-server} and C{twistd -n realtime} processes.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.redisnodes import (
    ChannelClient,
    PubSubSilencer,
    held,
    metric,
    online,
    push,
    startNodes,
    waitForReadiness,
)
from tests.redisserver import RedisServer
from tests.serverprocess import ServerProcess, api, linePush, publish, waitUntil


def publishAnswer(node: ServerProcess, channel: str, data: object) -> tuple[int, dict[str, Any]]:
    return api(node, "POST", "/api/publish", json.dumps({"channel": channel, "data": data}).encode())


class RedisOutageMixin:
    """
    Two nodes on a Redis that is stopped for a while and started again on
    the same port; C{persistent} says whether it keeps its data across.
    """

    persistent: bool
    redis: RedisServer
    nodes: list[ServerProcess]

    def setUp(self) -> None:
        extra = ("--appendonly", "yes", "--appendfsync", "always") if self.persistent else ()
        self.redis = RedisServer(*extra)
        self.addCleanup(self.redis.cleanup)
        self.nodes = startNodes(2, self.redis.url)
        for node in self.nodes:
            self.addCleanup(node.stop)

    def test_outage(self) -> None:
        """
        While Redis is down pushes and publishes are refused with an
        explicit error on both ports, /readyz is 503 with the reason,
        C{realtime_broker_up} is 0, and sessions stay connected.  When it is
        back the nodes reconnect by themselves: /readyz is green, pushes are
        delivered (and answered so) again, and a client that was away
        resumes from the position it had - with what it missed when the
        stream survived, with C{recovered: false} and the new epoch when it
        did not.
        """
        a, b = self.nodes
        stays = ChannelClient(a)
        away = ChannelClient(b)
        for client in (stays, away):
            self.addCleanup(client.close)
            self.assertTrue(client.request("subscribe", channel="news:outage")["ok"])
        for seq in range(3):
            publish(b, "news:outage", {"seq": seq})
        last = away.waitForCount(lambda f: f.get("type") == "message", 3)[-1]
        position = {"epoch": last["epoch"], "offset": last["offset"]}
        away.close()
        waitUntil(lambda: online(a, stays.uid) == 1 and online(a, away.uid) == 0, timeout=20)

        self.redis.stop()
        for node in self.nodes:
            body = waitForReadiness(node, 503)
            self.assertNotEqual(body["checks"]["broker"], "ok")
            waitUntil(lambda node=node: metric(node, "realtime_broker_up") == 0, timeout=20)
        status, answer = push(a, stays.uid, {"during": "outage"})
        self.assertEqual((status, answer["error"]["code"]), (503, "broker_unavailable"), answer)
        self.assertIn("Redis", answer["error"]["message"])
        [line] = linePush(a.ports["push-port"], json.dumps({"uid": stays.uid, "during": "outage"}).encode() + b"\n")
        self.assertTrue(line.startswith(b"error: broker unavailable (Redis: "), line)
        status, answer = publishAnswer(b, "news:outage", {"during": "outage"})
        self.assertEqual(status, 503, answer)
        self.assertEqual(stays.request("ping")["ok"], True)
        self.assertIsNone(stays.closed)

        self.redis.start()
        for node in self.nodes:
            waitForReadiness(node, 200)
            waitUntil(lambda node=node: metric(node, "realtime_broker_up") == 1, timeout=20)
        status, answer = push(b, stays.uid, {"after": "outage"})
        self.assertEqual((status, answer["status"]), (200, "delivered"), answer)
        self.assertEqual(json.loads(stays.waitFor(lambda f: f.get("type") == "push")["data"]), {"after": "outage"})
        self.assertEqual(
            linePush(a.ports["push-port"], json.dumps({"uid": stays.uid, "n": 2}).encode() + b"\n"), [b"ok"]
        )
        stays.waitForCount(lambda f: f.get("type") == "push", 2)
        self.assertEqual(len(stays.pushes()), 2, "nothing pushed during the outage arrives")

        published = [publish(b, "news:outage", {"seq": seq}) for seq in range(3, 6)]
        live = stays.waitForCount(lambda f: f.get("type") == "message" and f["data"]["seq"] >= 3, 3)
        self.assertEqual([m["data"]["seq"] for m in live], [3, 4, 5])
        back = ChannelClient(a)
        self.addCleanup(back.close)
        reply = back.request("subscribe", channel="news:outage", since=position)
        self.assertTrue(reply["ok"], reply)
        result = reply["result"]
        if self.persistent:
            self.assertEqual((result["recovered"], result["missed"], result["epoch"]), (True, 3, position["epoch"]))
            self.assertEqual([m["data"]["seq"] for m in back.messages("news:outage")], [3, 4, 5])
        else:
            self.assertEqual(result["recovered"], False)
            self.assertNotEqual(result["epoch"], position["epoch"])
            self.assertEqual((result["epoch"], result["offset"]), (published[-1]["epoch"], published[-1]["offset"]))
            self.assertEqual(back.messages("news:outage"), [])


class RedisKeepsItsDataTests(RedisOutageMixin, SynchronousTestCase):
    """
    Redis with an append-only file, fsynced at every write: the stream
    survives the restart.
    """

    persistent = True


class RedisLosesItsDataTests(RedisOutageMixin, SynchronousTestCase):
    """
    Redis without persistence (C{--save ''}): the restart loses the stream.
    """

    persistent = False


class HalfOpenPubSubTests(SynchronousTestCase):
    """
    A node whose pub/sub connection goes through a proxy that stops
    forwarding: Redis still counts the subscriber, the node hears nothing.
    """

    def test_deafConnectionReplaced(self) -> None:
        """
        Within 10 s the node finds its pub/sub connection deaf (/readyz 503
        saying so), replaces it and subscribes again, and a push reaches its
        session again.
        """
        redis = RedisServer()
        self.addCleanup(redis.cleanup)
        proxy = PubSubSilencer(redis.port)
        self.addCleanup(proxy.close)
        [node] = startNodes(1, proxy.url, redis.url)
        self.addCleanup(node.stop)
        client = ChannelClient(node)
        self.addCleanup(client.close)
        waitUntil(lambda: held(redis, node, client.uid), timeout=20)
        self.assertEqual(push(node, client.uid, {"n": 1})[1]["status"], "delivered")
        client.waitFor(lambda f: f.get("type") == "push")

        self.assertEqual(proxy.silence(), 1)
        silenced = time.monotonic()
        body = waitForReadiness(node, 503, timeout=10)
        self.assertIn("delivered nothing", body["checks"]["broker"])
        self.assertLess(time.monotonic() - silenced, 10)
        waitForReadiness(node, 200, timeout=20)

        def delivered() -> bool:
            push(node, client.uid, {"n": 2})
            return len(client.pushes()) > 1

        waitUntil(delivered, timeout=10)
        self.assertLess(time.monotonic() - silenced, 20)
        self.assertIsNone(client.closed)


class NodeKilledTests(SynchronousTestCase):
    """
    A node killed with SIGKILL, on the Redis store.
    """

    def test_killed(self) -> None:
        """
        Within 10 s of the kill the other node no longer counts the dead
        node's sessions (online, channel presence, /api/stats); the dead
        node's subscribers reconnect to the other node and resume from their
        positions, with every message published meanwhile and nothing twice.
        """
        redis = RedisServer()
        self.addCleanup(redis.cleanup)
        survivor, victim = startNodes(2, redis.url)
        for node in (survivor, victim):
            self.addCleanup(node.stop)
        here = ChannelClient(survivor)
        self.addCleanup(here.close)
        there = [ChannelClient(victim) for _ in range(2)]
        for client in [here, *there]:
            self.assertTrue(client.request("subscribe", channel="room:k")["ok"])
            self.assertTrue(client.request("subscribe", channel="news:k")["ok"])
        uids = {c.uid for c in [here, *there]}

        def presence() -> set[str]:
            return set(api(survivor, "GET", "/api/presence?channel=room:k")[1]["uids"])

        waitUntil(lambda: presence() == uids and api(survivor, "GET", "/api/stats")[1]["connections"] == 3, 20)
        self.assertEqual(api(survivor, "GET", "/api/stats")[1]["nodes"], 2)

        stop = threading.Event()
        sent: list[int] = []

        def publishing() -> None:
            seq = 0
            while not stop.is_set() or seq < 30:
                publish(survivor, "news:k", {"seq": seq})
                sent.append(seq)
                seq += 1

        publisher = threading.Thread(target=publishing, daemon=True)
        publisher.start()
        self.addCleanup(stop.set)
        waitUntil(lambda: all(len(c.messages("news:k")) >= 5 for c in there), timeout=20)

        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        waitUntil(lambda: all(c.closed is not None for c in there), timeout=10)
        positions = [c.messages("news:k")[-1] for c in there]
        resumed = [ChannelClient(survivor) for _ in there]
        for client, last in zip(resumed, positions, strict=True):
            self.addCleanup(client.close)
            since = {"epoch": last["epoch"], "offset": last["offset"]}
            self.assertTrue(client.request("subscribe", channel="news:k", since=since)["result"]["recovered"])

        gone = {c.uid for c in there}

        def forgotten() -> bool:
            stats = api(survivor, "GET", "/api/stats")[1]
            return (
                not presence() & gone
                and all(online(survivor, uid) == 0 for uid in gone)
                and stats["nodes"] == 1
                and stats["connections"] == 1 + len(resumed)
            )

        waitUntil(forgotten, timeout=15)
        self.assertLess(time.monotonic() - killed, 10, "the dead node's presences outlived 10 s")
        stop.set()
        publisher.join(30)
        for before, client in zip(there, resumed, strict=True):
            client.waitFor(lambda f: f.get("type") == "message" and f["data"]["seq"] == sent[-1], timeout=20)
            seqs = [m["data"]["seq"] for m in before.messages("news:k") + client.messages("news:k")]
            self.assertEqual(seqs, list(range(len(sent))), "every message once, in order, across the kill")
