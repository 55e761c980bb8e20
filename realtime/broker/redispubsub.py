"""
This node's Redis pub/sub link: subscribed to exactly the Redis channels its
sessions need (a uid's, a channel's) plus the cluster's control channel, as
Centrifugo's Redis engine does, instead of receiving everything and
filtering.

Pub/sub fails in two ways.  A connection that breaks is reconnected by
redis-py, which subscribes again to what it had; this link only backs off
between attempts.  A connection that stays up but delivers nothing (a proxy
or NAT that dropped the flow, a Redis that lost the client) is invisible to
the client, so the link probes it: every C{probeInterval} it publishes a
token to its own probe channel and expects it back through the pub/sub
connection within C{probeTimeout}; when it does not come, the link reports
itself deaf and drops the connection, so the next read makes a new one.
Centrifugo added exactly this after pods silently delivered nothing while
publishes were answered.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from realtime.redisio import loopOf, onLoop

__all__ = ["PubSubLink"]

_ERRORS: tuple[type[BaseException], ...]
try:
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError

    _ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError, asyncio.TimeoutError)
except ImportError:  # pragma: no cover - redis is what this module is for
    _ERRORS = (OSError,)


#: what awaiting the cancelled reader may raise
_ENDING: tuple[type[BaseException], ...] = (asyncio.CancelledError, *_ERRORS)


class PubSubLink:
    """
    Reference-counted Redis subscriptions feeding C{deliver(channel, data)}.

    @param client: the C{redis.asyncio} client for commands (publishing the
        probe).
    @param pubsub: a C{PubSub} of that client, or of another path to the
        same Redis (the tests use a proxy they can silence).
    @param deliver: called in the reactor with each message's Redis channel
        name (C{str}) and data (C{bytes}).
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        pubsub: Any,
        reactor: Any,
        deliver: Callable[[str, bytes], None],
        *,
        probeChannel: str,
        probeInterval: float = 2.0,
        probeTimeout: float = 6.0,
    ) -> None:
        self._client = client
        self._pubsub = pubsub
        self._reactor = reactor
        self._loop = loopOf(reactor)
        self._deliver = deliver
        self._wanted: dict[str, int] = {}
        self._toSubscribe: set[str] = set()
        self._toUnsubscribe: set[str] = set()
        self._syncing = False
        self._reader: asyncio.Task[None] | None = None
        # one subscription command at a time: redis-py's PubSub connects on
        # its first command, and two first commands at once would each make
        # a connection, the second orphaning what the first subscribed to
        self._commands = asyncio.Lock()
        self._stopping = False
        self.probeChannel = probeChannel
        self._probeToken = ""
        self._probeSent = 0.0
        self._heardAt = reactor.seconds()
        self._probeTimeout = probeTimeout
        self._probe = LoopingCall(self._sendProbe)
        self._probe.clock = reactor
        self._probeInterval = probeInterval
        #: why the link does not work now, or C{None} while it does
        self.problem: str | None = "not started"
        #: how many times the link found itself deaf and reconnected, and why
        #: the last time
        self.reconnects = 0
        self.lastDeafness: str | None = None
        # between dropping a deaf connection and hearing a probe on the new one
        self._replacing = False

    # what the node wants

    def want(self, channel: str) -> None:
        """
        One more local need for C{channel}; the first subscribes (with the
        other subscriptions of this reactor turn, in one command).
        """
        count = self._wanted.get(channel, 0)
        self._wanted[channel] = count + 1
        if count == 0:
            self._toUnsubscribe.discard(channel)
            self._toSubscribe.add(channel)
            self._scheduleSync()

    def unwant(self, channel: str) -> None:
        """
        One local need for C{channel} fewer; the last unsubscribes.
        """
        count = self._wanted.get(channel, 0)
        if count <= 1:
            self._wanted.pop(channel, None)
            self._toSubscribe.discard(channel)
            if count == 1:
                self._toUnsubscribe.add(channel)
                self._scheduleSync()
        else:
            self._wanted[channel] = count - 1

    def wanted(self) -> frozenset[str]:
        return frozenset(self._wanted)

    def _scheduleSync(self) -> None:
        if not self._syncing:
            self._syncing = True
            self._reactor.callLater(0, self._sync)

    def _sync(self) -> None:
        subscribe, self._toSubscribe = self._toSubscribe, set()
        unsubscribe, self._toUnsubscribe = self._toUnsubscribe, set()
        if not subscribe and not unsubscribe:
            self._syncing = False
            return

        async def apply() -> None:
            async with self._commands:
                if subscribe:
                    await self._pubsub.subscribe(*subscribe)
                if unsubscribe:
                    await self._pubsub.unsubscribe(*unsubscribe)

        def failed(reason: Any) -> None:
            # the pub/sub connection is down: redis-py subscribes again to
            # everything it holds when it reconnects, so remember the
            # changes it does not hold yet and try them with the next change
            self._toSubscribe |= {c for c in subscribe if c in self._wanted}
            self._toUnsubscribe |= {c for c in unsubscribe if c not in self._wanted}
            self.problem = f"subscribing failed: {reason.getErrorMessage()}"
            self._reactor.callLater(0.5, self._sync)

        onLoop(self._loop, apply()).addCallbacks(lambda _: self._sync(), failed)

    # running

    def start(self) -> Deferred[None]:
        """
        Subscribe to the probe channel, start reading and probing; fires
        once subscribed.
        """
        self._stopping = False

        async def begin() -> None:
            async with self._commands:
                await self._pubsub.subscribe(self.probeChannel)
            self._reader = self._loop.create_task(self._read())

        def started(_: object) -> None:
            self.problem = None
            self._heardAt = self._reactor.seconds()
            self._probe.start(self._probeInterval, now=False).addErrback(lambda f: self.log.failure("pub/sub probe", f))

        return onLoop(self._loop, begin()).addCallback(started)

    def stop(self) -> Deferred[None]:
        """
        Stop probing and reading, and close the pub/sub connection.
        """
        self._stopping = True
        if self._probe.running:
            self._probe.stop()

        async def end() -> None:
            if self._reader is not None:
                self._reader.cancel()
                try:
                    await self._reader
                except _ENDING:
                    pass
            await self._pubsub.aclose()

        return onLoop(self._loop, end())

    async def _read(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except _ERRORS as e:
                if not self._replacing:
                    # else the drop is the link's own: the reason stays the deafness
                    self.problem = f"Redis pub/sub connection lost: {e}"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:
                self.log.failure("reading Redis pub/sub")
                await asyncio.sleep(backoff)
                continue
            backoff = 0.05
            if message is None or message.get("type") not in ("message", "smessage"):
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else channel
            data = message["data"]
            if name == self.probeChannel:
                self._heard(data)
                continue
            try:
                self._deliver(name, data)
            except Exception:
                self.log.failure("delivering a Redis message on {channel}", channel=name)

    # the probe

    def _sendProbe(self) -> None:
        now = self._reactor.seconds()
        if now - self._heardAt > self._probeTimeout:
            self._deaf(now - self._heardAt)
            # the next probe, one interval on, tests the new connection
            return
        self._probeToken = secrets.token_hex(8)
        self._probeSent = now
        onLoop(self._loop, self._client.publish(self.probeChannel, self._probeToken)).addErrback(
            self._probeFailed
        )

    def _probeFailed(self, reason: Any) -> None:
        self.problem = f"Redis unreachable: {reason.getErrorMessage()}"

    def _heard(self, data: bytes) -> None:
        token = data.decode() if isinstance(data, bytes) else str(data)
        if token == self._probeToken:
            self._heardAt = self._reactor.seconds()
            self.problem = None
            self._replacing = False

    def _deaf(self, silentFor: float) -> None:
        """
        Nothing came back for too long: say so, and drop the connection so
        redis-py makes a new one and subscribes again.
        """
        self.problem = f"Redis pub/sub delivered nothing for {silentFor:.1f} s; reconnecting"
        self._replacing = True
        self.log.warn("{problem}", problem=self.problem)
        self.reconnects += 1
        self.lastDeafness = self.problem
        self._heardAt = self._reactor.seconds()
        connection = self._pubsub.connection
        if connection is not None:
            onLoop(self._loop, connection.disconnect()).addErrback(lambda f: None)
