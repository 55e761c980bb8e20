"""
The pub/sub connections under one node's link (L{realtime.broker.redispubsub}):
one to a single Redis, or one to each master of a Redis Cluster.

On a cluster every channel is sharded (L{realtime.redisio.pubsubCommands}
says why): a subscription is made on the master that owns its channel's
slot, so a node holds one pub/sub connection per master, and each of them
can break or go deaf on its own.  A probe answered on one of them proves
nothing about the others, so each connection has a probe channel of its
own, on its own master: the node's probe channel with a hash tag chosen so
that its slot belongs to that master.

Both kinds answer the same small surface, so the link's reference counts,
probes and backoff are written once: L{OneRedis} and L{ClusterShards}.
"""

from __future__ import annotations

import asyncio
from itertools import count
from typing import Any

from redis.exceptions import SlotNotCoveredError

from realtime.redisio import CLASSIC, SHARDED, PubSubCommands, isCluster
from realtime.redisraw import Heard, drainMessages, heardOf, quietPushes

__all__ = ["OneRedis", "ClusterShards", "shardsFor", "Heard"]


class OneRedis:
    """
    The one classic pub/sub connection to a single Redis (or Sentinel's
    master), named C{"redis"}.
    """

    commands: PubSubCommands = CLASSIC

    def __init__(self, listener: Any) -> None:
        self._pubsub = listener.pubsub(push_handler_func=quietPushes)

    def label(self, name: str) -> str:
        """How a problem of connection C{name} is introduced: not at all."""
        return ""

    async def open(self, probeChannel: str) -> dict[str, str]:
        """
        Connect and subscribe to C{probeChannel}; answers {connection name:
        its probe channel}.
        """
        await self._pubsub.subscribe(probeChannel)
        return {"redis": probeChannel}

    async def newConnections(self, probes: dict[str, str], probeChannel: str) -> tuple[dict[str, str], set[str]]:
        """
        What the topology changed since C{probes} ({connection: its probe
        channel}) were made: the connections with a new probe channel, and
        those gone.  Nothing, on one Redis.
        """
        return {}, set()

    async def rehome(self) -> None:
        """
        Redis unsubscribed the node from a channel it wants: learn where
        that channel lives now (a single Redis does not do that).
        """

    async def subscribe(self, channels: set[str]) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, channels: set[str]) -> None:
        await self._pubsub.unsubscribe(*channels)

    async def read(self, name: str, timeout: float) -> list[Heard]:
        """
        The next messages of connection C{name}: the first to come (none
        after C{timeout}) and every one already read behind it
        (L{realtime.redisraw.drainMessages}).
        """
        message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=timeout)
        # None too after an unsubscription's answer, which may have messages behind it
        heard = heardOf(message) if message else []
        heard += await drainMessages(self._pubsub)
        return heard

    def connection(self, name: str) -> Any:
        """
        The redis-py connection under C{name}, to drop when it is deaf.
        """
        return self._pubsub.connection

    def owner(self, channel: str) -> str | None:
        """The connection C{channel} is subscribed on: the one."""
        return "redis"

    async def close(self) -> None:
        await self._pubsub.aclose()


#: the longest one read of a master's connection waits: redis-py (from 8.2)
#: holds that connection's lock over a bounded read, and an C{SSUBSCRIBE} to
#: the same master waits for the lock, so a long read would hold back every
#: new subscription (a session's uid, counted only once confirmed) by up to
#: its timeout.  Idle, each master costs 1 / POLL_SLICE wakeups a second.
POLL_SLICE = 0.05


class ClusterShards:
    """
    One sharded pub/sub connection per master of a Redis Cluster, each
    named by its master (C{host:port}).

    redis-py's C{ClusterPubSub} routes each C{SSUBSCRIBE} to the master of
    its channel's slot, subscribes again slot by slot after a reconnect, and
    moves subscriptions after it learns of a slot's new owner; this class
    reads each master's connection in its own task (redis-py's round robin
    over them would wait out each idle one's timeout in turn) and gives each
    a probe channel.
    """

    commands: PubSubCommands = SHARDED

    def __init__(self, listener: Any) -> None:
        self._cluster = listener
        self._pubsub = listener.pubsub()
        self._nodes: dict[str, Any] = {}

    def label(self, name: str) -> str:
        return f"master {name}: "

    async def open(self, probeChannel: str) -> dict[str, str]:
        await self._cluster.initialize()
        return (await self.newConnections({}, probeChannel))[0]

    async def newConnections(self, probes: dict[str, str], probeChannel: str) -> tuple[dict[str, str], set[str]]:
        """
        A probe channel on each master not probed yet (all of them at
        first, then those a failover promoted), and a new one for each
        master whose probe channel's slot moved to another (a resharding);
        the masters gone are dropped.
        """
        primaries = {node.name: node for node in self._cluster.get_primaries()}
        gone = set(self._nodes) - set(primaries)
        for name in gone:
            del self._nodes[name]
        changed: dict[str, str] = {}
        for name, node in primaries.items():
            old = probes.get(name)
            if old is not None and self._cluster.get_node_from_key(old).name == name:
                continue
            channel = self.probeChannelOn(node, probeChannel)
            await self._pubsub.ssubscribe(channel)
            if old is not None:
                await self._pubsub.sunsubscribe(old)
            self._nodes[name] = node
            changed[name] = channel
        return changed, gone

    async def rehome(self) -> None:
        """
        Read the cluster's slots again: redis-py's C{ClusterPubSub} then moves
        each subscription whose slot changed master to the new one (Redis
        unsubscribes the subscribers of a slot that leaves a master).
        """
        await self._cluster.nodes_manager.initialize()

    def probeChannelOn(self, node: Any, probeChannel: str) -> str:
        """
        C{probeChannel} with the first hash tag C{{0}}, C{{1}}, ... whose
        slot C{node} owns (a few tries: the slots are spread over the
        masters).
        """
        for i in count():  # pragma: no branch - some tag lands on every master
            channel = f"{probeChannel}:{{{i}}}"
            if self._cluster.get_node_from_key(channel).name == node.name:
                return channel
        raise AssertionError("unreachable")

    async def subscribe(self, channels: set[str]) -> None:
        await self._cluster.initialize()
        await self._pubsub.ssubscribe(*channels)

    async def unsubscribe(self, channels: set[str]) -> None:
        await self._pubsub.sunsubscribe(*channels)

    async def read(self, name: str, timeout: float) -> list[Heard]:
        """
        The next message of master C{name}'s connection, one at a time: a
        sunsubscribe among buffered replies must go through the cluster
        client's own bookkeeping, which only C{get_sharded_message} does.
        """
        node = self._nodes.get(name)
        if node is None or name not in self._pubsub.node_pubsub_mapping:
            # not connected to that master (yet, or any more): nothing to read
            await asyncio.sleep(timeout)
            return []
        message = await self._pubsub.get_sharded_message(timeout=min(timeout, POLL_SLICE), target_node=node)
        if message is None:
            return []
        if message.get("type") == "sunsubscribe":
            # answered too: the link tells its own from Redis's
            return [("sunsubscribe", message["channel"], None)]
        return heardOf(message)

    def connection(self, name: str) -> Any:
        pubsub = self._pubsub.node_pubsub_mapping.get(name)
        return None if pubsub is None else pubsub.connection

    def owner(self, channel: str) -> str | None:
        """
        The master that owns C{channel}'s slot in the slots last read, or
        C{None} while none does (a slot between owners).
        """
        try:
            return str(self._cluster.get_node_from_key(channel).name)
        except SlotNotCoveredError:
            return None

    async def close(self) -> None:
        await self._pubsub.aclose()


def shardsFor(listener: Any) -> OneRedis | ClusterShards:
    """
    The connections C{listener} (a C{redis.asyncio} client) subscribes
    through.
    """
    return ClusterShards(listener) if isCluster(listener) else OneRedis(listener)
