"""
Following a Redis Cluster's slots when they change master under a node's
sharded subscriptions (L{realtime.broker.redispubsub}).

Redis unsubscribes a node from the sharded channels of a slot that leaves a
master, in a resharding and in a failover alike.  redis-py's C{ClusterPubSub}
moves each subscription to its slot's new owner once it has read the slots
again, so the node has to make it read them, and read them until they show
the move: right after C{CLUSTER FAILOVER} the master asked may not have heard
of it yet.  Left on a stale map, the channel stays unsubscribed; or a
reconnection subscribes it again on the old master turned replica, which
relays the shard's messages but is not counted by the new master's
C{SPUBLISH}, so pushes would arrive and be answered as reaching nobody.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger

from realtime.redisio import onLoop

__all__ = ["SlotFollower"]

#: how long after a slots read that still names a channel's old master to
#: read them again, and how many times before dropping that connection
_REHOME_DELAY = 0.2
_REHOME_TRIES = 50


class SlotFollower:
    """
    Reads the slots again (once at a time) after Redis unsubscribed the node
    from a channel it wants, until each such channel has a new owner.

    @param shards: the link's L{realtime.broker.redisshards.ClusterShards}
        (or L{OneRedis}, where nothing moves).
    @param wanted: whether the node still wants a channel.
    @param reconnect: drops a pub/sub connection, by name, so redis-py
        subscribes again to all it holds there.
    @param stopping: whether the link is stopping, when nothing follows.
    """

    log = Logger()

    def __init__(
        self,
        shards: Any,
        reactor: Any,
        loop: Any,
        wanted: Callable[[str], bool],
        reconnect: Callable[[str], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._shards = shards
        self._reactor = reactor
        self._loop = loop
        self._wanted = wanted
        self._reconnect = reconnect
        self._reading = False
        #: a read asked for while one ran: read again when that ends
        self._again = False
        self._tries = 0
        self._retry: Any = None
        self._stopping = stopping
        #: the wanted channels Redis unsubscribed the node from, each with
        #: the connection it came on, until the slots read name a new owner
        self._unhomed: dict[str, str] = {}

    def unsubscribed(self, channel: str, source: str) -> None:
        """
        Redis ended the subscription to C{channel} on connection C{source}
        (or the node's own unsubscribe was answered): follow it if wanted.
        """
        if self._wanted(channel):
            self._unhomed[channel] = source
            self.follow()

    def follow(self) -> None:
        """
        Read the slots again, so redis-py moves the subscriptions whose slot
        changed master; again a little later while a channel Redis
        unsubscribed still maps to the master that dropped it.
        """
        self._cancelRetry()
        if self._reading:
            self._again = True
            return
        self._reading = True
        self._again = False
        if not self._tries:
            self.log.info("Redis Cluster slots moved; following them")
        onLoop(self._loop, self._shards.rehome()).addErrback(
            lambda f: self.log.warn("Redis topology: {why}", why=f.getErrorMessage())
        ).addBoth(self._read)

    def cancel(self) -> None:
        """Read no more (the link stops)."""
        self._cancelRetry()

    def _read(self, _: object) -> None:
        self._reading = False
        if self._stopping():
            return
        stale = self._stillUnhomed()
        if self._again:
            self.follow()
        elif not stale:
            self._tries = 0
        elif self._tries < _REHOME_TRIES:
            self._tries += 1
            self._retry = self._reactor.callLater(_REHOME_DELAY, self.follow)
        else:
            self._giveUp(stale)

    def _cancelRetry(self) -> None:
        # called by the retry itself too, which is no longer active then
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _stillUnhomed(self) -> set[str]:
        """
        The connections of the channels Redis unsubscribed that the slots
        last read still place there; forget the others.
        """
        for channel, source in list(self._unhomed.items()):
            if not self._wanted(channel) or self._shards.owner(channel) not in (source, None):
                del self._unhomed[channel]
        return set(self._unhomed.values())

    def _giveUp(self, sources: set[str]) -> None:
        """
        The slots still name the masters that unsubscribed the node (a slot
        moved away and back): redis-py believes it holds those
        subscriptions, so drop the connections, and it subscribes again to
        all it holds there.
        """
        self._tries = 0
        self._unhomed.clear()
        for name in sources:
            self.log.warn("Redis unsubscribed channels its slots still place on {name}; reconnecting", name=name)
            self._reconnect(name)
