"""
Tests for L{realtime.redisio}: Redis coroutines as Deferreds, and the
pipeliner every Redis part sends through, against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from realtime.redisio import Pipeliner, WrongReactor, checkURL, loopOf
from tests.redisserver import sharedServer


class PipelinerTests(TestCase):
    def setUp(self) -> None:
        self.redis = sharedServer()
        self.redis.command("FLUSHALL")
        self.pipeliner = Pipeliner(aioredis.Redis.from_url(self.redis.url, protocol=3), reactor)
        self.addCleanup(self.pipeliner.close)

    async def test_inOrder(self) -> None:
        """
        Operations asked for in one turn are carried out in that order.
        """
        answers = [
            self.pipeliner.submit(lambda pipe, i=i: (pipe.rpush("list", i), 1)[1], lambda a: a[0]) for i in range(20)
        ]
        self.assertEqual([await d for d in answers], list(range(1, 21)))

    async def test_unqueueableFailsAlone(self) -> None:
        """
        An operation that cannot even be queued fails by itself; the others
        of its turn, and later ones, are answered.
        """

        def broken(pipe: Any) -> int:
            raise ValueError("cannot queue this")

        before = self.pipeliner.submit(lambda pipe: (pipe.set("k", "v"), 1)[1], lambda a: a[0])
        failing = self.pipeliner.submit(broken, lambda a: a)
        after = self.pipeliner.submit(lambda pipe: (pipe.get("k"), 1)[1], lambda a: a[0])
        self.assertTrue(await before)
        with self.assertRaises(ValueError):
            await failing
        self.assertEqual(await after, b"v")
        later = self.pipeliner.submit(lambda pipe: (pipe.get("k"), 1)[1], lambda a: a[0])
        self.assertEqual(await later, b"v")

    async def test_commandFailsAlone(self) -> None:
        """
        A command Redis refuses fails its operation only.
        """
        self.redis.command("SET", "s", "text")
        wrong = self.pipeliner.submit(lambda pipe: (pipe.incr("s"), 1)[1], lambda a: a[0])
        right = self.pipeliner.submit(lambda pipe: (pipe.incr("n"), 1)[1], lambda a: a[0])
        with self.assertRaises(Exception):  # noqa: B017 - redis-py's ResponseError
            await wrong
        self.assertEqual(await right, 1)


class ChecksTests(SynchronousTestCase):
    def test_wrongReactor(self) -> None:
        """
        Any reactor but the asyncio one is refused with the command that works.
        """
        from twisted.internet.testing import MemoryReactor

        with self.assertRaises(WrongReactor) as caught:
            loopOf(MemoryReactor())
        self.assertIn("twistd -r asyncio", str(caught.exception))

    def test_urls(self) -> None:
        """
        Every documented form is taken; others are refused saying which are.
        """
        for url in ("redis://h:1/0", "rediss://h:1/0", "redis+sentinel://a:1,b:2/mymaster/0", "redis+cluster://h:1"):
            checkURL(url)
        for url in ("http://h", "redis://", "redis+sentinel://a:1"):
            with self.assertRaises(ValueError):
                checkURL(url)
