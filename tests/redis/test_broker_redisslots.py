"""
Tests for L{realtime.broker.redisslots}: when the follower reads the
slots again, and when it gives up, on a L{task.Clock} and a made-up slots
map (the real cluster's cases are in C{test_broker_redispubsub.py}).
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from realtime.broker import redisslots
from realtime.broker.redisslots import SlotFollower
from realtime.redisio import loopOf


class SlotsMap:
    """
    Shards whose slots read name C{owners} in turn, one per read (the last
    for ever after); it counts its reads.
    """

    def __init__(self, *owners: str | None) -> None:
        self.owners = list(owners)
        self.reads = 0
        self.current = "old"

    async def rehome(self) -> None:
        self.reads += 1
        if self.owners:
            self.current = self.owners.pop(0)

    def owner(self, channel: str) -> str | None:
        return self.current


class SlotFollowerTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reconnected: list[str] = []
        self.wanted = {"ch"}
        self.stopping = False

    def follower(self, shards: SlotsMap) -> SlotFollower:
        return SlotFollower(
            shards, self.clock, loopOf(reactor), self.wanted.__contains__, self.reconnected.append,
            lambda: self.stopping,
        )  # fmt: skip

    async def turn(self) -> None:
        """Let the reads started on the asyncio loop end."""
        for _ in range(3):
            await task.deferLater(reactor, 0, lambda: None)

    async def test_readAgainWhileStale(self) -> None:
        """
        While the slots still place the channel on the master that dropped
        it (or on none), they are read again every 0.2 s; once they name a
        new owner, no more.
        """
        shards = SlotsMap("old", None, "new")
        follower = self.follower(shards)
        follower.unsubscribed("ch", "old")
        await self.turn()
        self.assertEqual(shards.reads, 1)
        for reads in (2, 3):
            self.clock.advance(0.2)
            await self.turn()
            self.assertEqual(shards.reads, reads)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.reconnected, [])

    async def test_giveUp(self) -> None:
        """
        Slots that keep naming the same master, read C{_REHOME_TRIES} times
        more: that master's connection is dropped, once, and nothing is
        read again.
        """
        self.patch(redisslots, "_REHOME_TRIES", 3)
        shards = SlotsMap()
        follower = self.follower(shards)
        follower.unsubscribed("ch", "old")
        await self.turn()
        for _ in range(3):
            self.clock.advance(0.2)
            await self.turn()
        self.assertEqual((shards.reads, self.reconnected), (4, ["old"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_askedDuringARead(self) -> None:
        """
        A read asked for while one runs is not dropped: one more read runs
        after it.
        """
        shards = SlotsMap("new")
        follower = self.follower(shards)
        follower.follow()
        follower.follow()
        await self.turn()
        self.assertEqual(shards.reads, 2)

    async def test_notWanted(self) -> None:
        """
        A channel the node no longer wants is not followed.
        """
        shards = SlotsMap()
        self.follower(shards).unsubscribed("other", "old")
        await self.turn()
        self.assertEqual(shards.reads, 0)

    async def test_cancelled(self) -> None:
        """
        Cancelled (the link stops), the follower leaves no read pending.
        """
        shards = SlotsMap()
        follower = self.follower(shards)
        follower.unsubscribed("ch", "old")
        await self.turn()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        follower.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
