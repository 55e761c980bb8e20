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

On a Redis Cluster the link holds one sharded connection per master
(L{realtime.broker.redisshards}), and each is probed on its own probe
channel, with its own deadline: a deaf master's connection is dropped and
subscribed again alone, and L{PubSubLink.problem} names it meanwhile, while
the other masters' connections go on delivering.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Callable, ContextManager

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from realtime.broker.redisconfirms import Confirmations
from realtime.broker.redisshards import shardsFor
from realtime.broker.redisslots import SlotFollower
from realtime.redisio import PubSubCommands, loopOf, onLoop

__all__ = ["PubSubLink"]

_ERRORS: tuple[type[BaseException], ...]
#: a (un)subscription sent to a master that no longer owns its slot
_MOVED: tuple[type[BaseException], ...]
try:
    from redis.exceptions import AskError, MovedError
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError

    _ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError, asyncio.TimeoutError)
    _MOVED = (MovedError, AskError)
except ImportError:  # pragma: no cover - redis is what this module is for
    _ERRORS = (OSError,)
    _MOVED = ()


#: what awaiting the cancelled reader may raise
_ENDING: tuple[type[BaseException], ...] = (asyncio.CancelledError, *_ERRORS)


class _Probed:
    """
    One pub/sub connection's probe: its channel, the token in flight, when
    the last token came back, and what is wrong with it.
    """

    def __init__(self, name: str, channel: str, now: float) -> None:
        self.name = name
        self.channel = channel
        self.token = ""
        self.heardAt = now
        self.problem: str | None = None
        self.reader: asyncio.Task[None] | None = None
        #: between dropping a deaf connection and hearing a probe on the new one
        self.replacing = False


class PubSubLink:
    """
    Reference-counted Redis subscriptions feeding C{deliver(channel, data)}.

    @param client: the C{redis.asyncio} client for commands (publishing the
        probes).
    @param listener: the client whose pub/sub connections receive: the same
        client, or another path to the same Redis or Redis Cluster (the
        tests use a proxy they can silence).
    @param deliver: called in the reactor with each message's Redis channel
        name (C{str}) and data (C{bytes}).
    @param probeChannel: this node's own channel; on a cluster, each master's
        connection is probed on this name with a hash tag of that master.
    @param burst: what to deliver several messages read together inside
        (L{realtime.delivery.fanout.Fanout.burst}), if anything.
    @param resubscribed: called (once a reactor turn at most) when Redis
        subscribed the node again after a reconnect: Redis may have lost
        what the node wrote about its sessions too (a restart without its
        data), and now is the earliest moment to write it back.  Its
        argument says whether the link saw the connection fail and waited
        for every subscription it held (C{True}), or only heard a channel
        confirmed twice (C{False}): redis-py reconnects inside a read when
        the listener has retries, and a subscription retried after a
        failure may be one redis-py made again as it reconnected.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        listener: Any,
        reactor: Any,
        deliver: Callable[[str, bytes], None],
        *,
        probeChannel: str,
        probeInterval: float = 2.0,
        probeTimeout: float = 6.0,
        burst: Callable[[], ContextManager[None]] | None = None,
        resubscribed: Callable[[bool], object] | None = None,
    ) -> None:
        self._client = client
        self._burst = burst
        self._shards = shardsFor(listener)
        #: the commands this link's messages travel by (PUBLISH/SPUBLISH)
        self.commands: PubSubCommands = self._shards.commands
        self._reactor = reactor
        self._loop = loopOf(reactor)
        self._deliver = deliver
        self._wanted: dict[str, int] = {}
        #: what Redis confirmed of the wanted channels, and what dropped
        #: connections took away until it confirms them again (redis-py
        #: subscribes again as it reconnects)
        self._confirms = Confirmations(reactor.seconds)
        self._resubscribed = resubscribed
        #: whether a call of C{resubscribed} is due this turn, and its argument
        self._resubscribedSoon = False
        self._afterLoss = False
        self._toSubscribe: set[str] = set()
        self._toUnsubscribe: set[str] = set()
        self._syncing = False
        #: the retry of a (un)subscription that failed, until it runs
        self._retry: Any = None
        # one subscription command at a time: redis-py's PubSub connects on
        # its first command, and two first commands at once would each make
        # a connection, the second orphaning what the first subscribed to
        self._commands = asyncio.Lock()
        self._stopping = False
        self.probeChannel = probeChannel
        self._probed: dict[str, _Probed] = {}
        self._byChannel: dict[str, _Probed] = {}
        self._probeTimeout = probeTimeout
        self._probe = LoopingCall(self._sendProbes)
        self._probe.clock = reactor
        self._probeInterval = probeInterval
        self._started = False
        self._slots = SlotFollower(
            self._shards, reactor, self._loop, self._isWanted, self._reconnect, lambda: self._stopping
        )
        self._subscribing: str | None = None
        #: how many times the link found a connection deaf and reconnected
        #: it, and why the last time
        self.reconnects = 0
        self.lastDeafness: str | None = None

    @property
    def problem(self) -> str | None:
        """
        Why the link does not deliver everything now (each connection's
        trouble, named by its master on a cluster), or C{None} while it does.
        """
        if not self._started:
            return "not started"
        problems = [self._shards.label(p.name) + p.problem for p in self._probed.values() if p.problem]
        if self._subscribing:
            problems.append(self._subscribing)
        if self._confirms.lost:
            problems.append(f"subscriptions not confirmed again since a reconnect: {len(self._confirms.lost)}")
        return "; ".join(problems) or None

    def probeChannels(self) -> frozenset[str]:
        """
        The probe channel of each connection (one on a single Redis, one
        per master on a cluster).
        """
        return frozenset(self._byChannel)

    # what the node wants

    def want(self, channel: str) -> None:
        """
        One more local need for C{channel}; the first subscribes (with the
        other subscriptions of this reactor turn).
        """
        count = self._wanted.get(channel, 0)
        self._wanted[channel] = count + 1
        if count == 0:
            self._toUnsubscribe.discard(channel)
            self._toSubscribe.add(channel)
            self._scheduleSync()

    def subscribedTo(self, channel: str) -> Deferred[None]:
        """
        Fires once Redis has confirmed this node's subscription to
        C{channel} (at once if it has, or if C{channel} is not wanted):
        what the node writes after it, such as the uid's connection count,
        is never seen by a publisher before the subscription is.
        """
        if channel not in self._wanted:
            return succeed(None)
        return self._confirms.waitFor(channel)

    def settled(self) -> Deferred[None]:
        """
        Fires once Redis has confirmed again every subscription that dropped
        connections took away (at once if none is missing): what the node
        writes back about its sessions must not reach Redis before the
        subscriptions that deliver to them, or a push meanwhile would be
        answered delivered and be lost.
        """
        return self._confirms.settled()

    def _confirm(self, channel: str, source: str) -> None:
        """
        Redis confirmed this node's subscription to C{channel}, on
        connection C{source}.
        """
        settled, again = self._confirms.confirm(channel, source, channel in self._wanted)
        if settled:
            self._scheduleResubscribed(True)
        elif again:
            self._scheduleResubscribed(False)

    def _scheduleResubscribed(self, afterLoss: bool) -> None:
        self._afterLoss |= afterLoss
        if self._resubscribed is not None and not self._resubscribedSoon:
            self._resubscribedSoon = True
            self._reactor.callLater(0, self._callResubscribed)

    def _callResubscribed(self) -> None:
        afterLoss, self._afterLoss, self._resubscribedSoon = self._afterLoss, False, False
        if self._resubscribed is not None and not self._stopping:
            self._resubscribed(afterLoss)

    def _dropped(self, name: str) -> None:
        """
        Connection C{name} is gone, and with it the subscriptions on it.
        """
        self._confirms.dropped(name)

    def unwant(self, channel: str) -> None:
        """
        One local need for C{channel} fewer; the last unsubscribes.
        """
        count = self._wanted.get(channel, 0)
        if count <= 1:
            self._wanted.pop(channel, None)
            self._confirms.unconfirm(channel)
            # nothing left to wait for
            self._confirms.release(channel)
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
        self._retry = None
        if self._stopping:
            self._syncing = False
            return
        subscribe, self._toSubscribe = self._toSubscribe, set()
        unsubscribe, self._toUnsubscribe = self._toUnsubscribe, set()
        if not subscribe and not unsubscribe:
            self._syncing = False
            return

        async def apply() -> None:
            async with self._commands:
                if subscribe:
                    await self._shards.subscribe(subscribe)
                if unsubscribe:
                    await self._shards.unsubscribe(unsubscribe)

        def applied(_: object) -> None:
            self._subscribing = None
            self._sync()

        def failed(reason: Any) -> None:
            # the pub/sub connection is down: redis-py subscribes again to
            # everything it holds when it reconnects, so remember the
            # changes it does not hold yet and try them with the next change
            self._toSubscribe |= {c for c in subscribe if c in self._wanted}
            self._toUnsubscribe |= {c for c in unsubscribe if c not in self._wanted}
            self._subscribing = f"subscribing failed: {reason.getErrorMessage()}"
            if self._stopping:
                self._syncing = False
                return
            self._retry = self._reactor.callLater(0.5, self._sync)

        onLoop(self._loop, apply()).addCallbacks(applied, failed)

    # running

    def start(self) -> Deferred[None]:
        """
        Subscribe to the probe channel of each connection, start reading and
        probing; fires once subscribed.
        """
        self._stopping = False

        async def begin() -> dict[str, str]:
            async with self._commands:
                return await self._shards.open(self.probeChannel)

        def started(probes: dict[str, str]) -> None:
            self._started = True
            self._add(probes)
            self._probe.start(self._probeInterval, now=False).addErrback(lambda f: self.log.failure("pub/sub probe", f))

        return onLoop(self._loop, begin()).addCallback(started)

    def _add(self, probes: dict[str, str]) -> None:
        for name, channel in probes.items():
            probed = self._probed.get(name)
            if probed is not None:
                # the same connection, probed on a channel of its master again
                self._forgetChannel(probed)
                probed.channel = channel
            else:
                probed = self._probed[name] = _Probed(name, channel, self._reactor.seconds())
                probed.reader = self._loop.create_task(self._read(probed))
            self._byChannel[channel] = probed

    def _changed(self, changes: tuple[dict[str, str], set[str]]) -> None:
        """
        Follow the topology: probe the new or moved connections, forget the
        masters gone.
        """
        probes, gone = changes
        # the masters gone first: a replica promoted in a dead master's place
        # owns its slots, so its probe channel is the dead master's own
        for name in gone:
            probed = self._probed.pop(name, None)
            if probed is None:
                continue
            self._forgetChannel(probed)
            if probed.reader is not None:
                probed.reader.cancel()
        self._add(probes)

    def _forgetChannel(self, probed: _Probed) -> None:
        """
        Stop routing C{probed}'s probe channel to it, unless the channel is
        another connection's now.
        """
        if self._byChannel.get(probed.channel) is probed:
            del self._byChannel[probed.channel]

    def stop(self) -> Deferred[None]:
        """
        Stop probing and reading, and close the pub/sub connections.
        """
        self._stopping = True
        if self._retry is not None and self._retry.active():
            # a subscription that failed is not tried again on a closed link
            self._retry.cancel()
            self._retry = None
            self._syncing = False
        self._slots.cancel()
        if self._probe.running:
            self._probe.stop()

        async def end() -> None:
            for probed in self._probed.values():
                if probed.reader is not None:
                    probed.reader.cancel()
                    try:
                        await probed.reader
                    except _ENDING:
                        pass
            await self._shards.close()

        return onLoop(self._loop, end())

    async def _read(self, probed: _Probed) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                heard = await self._shards.read(probed.name, 1.0)
            except asyncio.CancelledError:
                raise
            except _ERRORS as e:
                self._dropped(probed.name)
                if not probed.replacing:
                    # else the drop is the link's own: the reason stays the deafness
                    probed.problem = f"Redis pub/sub connection lost: {e}"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except _MOVED:
                # the answer to a (un)subscription that went to a slot's old
                # master during a resharding: learn the new owners
                self._slots.follow()
                continue
            except Exception:
                self.log.failure("reading Redis pub/sub")
                await asyncio.sleep(backoff)
                continue
            backoff = 0.05
            if len(heard) > 1 and self._burst is not None:
                with self._burst():
                    for kind, channel, data in heard:
                        self._hear(probed.name, kind, channel, data)
            else:
                for kind, channel, data in heard:
                    self._hear(probed.name, kind, channel, data)

    def _hear(self, source: str, kind: str, channel: bytes | str, data: Any) -> None:
        if kind == "sunsubscribe":
            self._unsubscribedByRedis(channel, source)
            return
        name = channel.decode() if isinstance(channel, bytes) else channel
        if kind == "subscribe":
            self._confirm(name, source)
            return
        heard = self._byChannel.get(name)
        if heard is not None:
            self._heard(heard, data)
            return
        try:
            self._deliver(name, data)
        except Exception:
            self.log.failure("delivering a Redis message on {channel}", channel=name)

    def _unsubscribedByRedis(self, channel: bytes | str, source: str) -> None:
        """
        A sharded channel's subscription ended on connection C{source}: the
        link's own unsubscribe, or Redis's when the channel's slot moved to
        another master (a resharding, a failover).  For a channel still
        wanted, learn the new owner, where redis-py then subscribes it
        again.
        """
        name = channel.decode() if isinstance(channel, bytes) else channel
        self._confirms.unconfirm(name)
        self._slots.unsubscribed(name, source)

    def _isWanted(self, channel: str) -> bool:
        return channel in self._wanted or channel in self._byChannel

    # the probes

    def _sendProbes(self) -> None:
        now = self._reactor.seconds()
        for probed in list(self._probed.values()):
            if now - probed.heardAt > self._probeTimeout:
                self._deaf(probed, now - probed.heardAt)
                # the next probe, one interval on, tests the new connection
                continue
            probed.token = secrets.token_hex(8)
            sent = self._client.execute_command(self.commands.publish, probed.channel, probed.token)
            onLoop(self._loop, sent).addErrback(self._probeFailed, probed)
        # a resharding or failover may have added masters: probe them too
        probes = {name: probed.channel for name, probed in self._probed.items()}

        async def follow() -> tuple[dict[str, str], set[str]]:
            async with self._commands:
                return await self._shards.newConnections(probes, self.probeChannel)

        onLoop(self._loop, follow()).addCallbacks(
            self._changed, lambda f: self.log.warn("Redis topology: {why}", why=f.getErrorMessage())
        )

    def _probeFailed(self, reason: Any, probed: _Probed) -> None:
        probed.problem = f"Redis unreachable: {reason.getErrorMessage()}"

    def _heard(self, probed: _Probed, data: bytes) -> None:
        token = data.decode() if isinstance(data, bytes) else str(data)
        if token == probed.token:
            probed.heardAt = self._reactor.seconds()
            probed.problem = None
            probed.replacing = False
            if self._confirms.lost:
                self._subscribeMissed(probed)

    def _subscribeMissed(self, probed: _Probed) -> None:
        """
        A probe came back on C{probed}'s connection: subscribe again (to
        wherever their slots are now) to the lost channels it missed
        (L{Confirmations.missed}), rather than stay deaf to them.
        """
        missed = self._confirms.missed(probed.name, probed.heardAt, self._probed, self._shards.owner)
        if missed:
            self.log.warn("Redis did not subscribe this node again to {count} channels; subscribing", count=len(missed))
            self._toSubscribe |= missed
            self._scheduleSync()

    def _deaf(self, probed: _Probed, silentFor: float) -> None:
        """
        Nothing came back on C{probed}'s connection for too long: say so,
        and drop it so redis-py makes a new one and subscribes again.
        """
        probed.problem = f"Redis pub/sub delivered nothing for {silentFor:.1f} s; reconnecting"
        probed.replacing = True
        self.log.warn("{problem}", problem=self._shards.label(probed.name) + probed.problem)
        self.reconnects += 1
        self.lastDeafness = probed.problem
        probed.heardAt = self._reactor.seconds()
        self._reconnect(probed.name)

    def _reconnect(self, name: str) -> None:
        """
        Drop connection C{name}: redis-py makes a new one at the next read
        and subscribes again to everything it held.
        """
        self._dropped(name)
        connection = self._shards.connection(name)
        if connection is not None:
            onLoop(self._loop, connection.disconnect()).addErrback(lambda f: None)
