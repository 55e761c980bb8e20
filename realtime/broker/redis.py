"""
The broker for several nodes (C{--broker redis://...}): a push taken by any
node reaches every matching session on every node, once.

Each node subscribes only to the Redis channels its own sessions need - a
uid's while it holds a session of that uid, a channel's while a session is
subscribed to it - plus the channel every node hears, as Centrifugo's Redis
engine does (L{realtime.broker.redispubsub}).  A push is published once per
addressed uid or channel, and each node that receives it frames it once and
writes it to its sessions through the same local delivery the memory broker
uses (L{realtime.broker.memory.MemoryBroker}): the publishing node delivers
to its own sessions the same way, when the message comes back from Redis, so
every session gets each message exactly once and in the order Redis
published them.

Wired with the Redis store on the same Redis (L{keepHistoryIn}, as
C{realtime.wiring} does for C{--broker} and C{--store} naming one URL), the
broker is an L{IHistoryBroker}: a channel message is appended to the
channel's history and published by one script, so every node receives a
channel's messages in offset order whichever nodes published them, and a
node that misses one on pub/sub notices and reads it from the history
(L{realtime.broker.redisgaps}).

Answers keep their meaning across the cluster.  A push to a uid counts the
connections the uid holds on live nodes, read in the same pipeline right
after the C{PUBLISH} (C{SPUBLISH} on a cluster, whose answer counts every
node subscribed to that channel: they all subscribe on the master of its
slot), and only if Redis delivered it to at least one node:
never C{ok} for a uid nobody holds.  A channel message counts the
channel's subscriptions, a broadcast every live node's connections.  While
Redis cannot be reached, pushes fail with the reason instead of being
answered.  Pushes to session ids stay on the node that took them: session
ids are this process's own, and no port addresses them.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any, Callable, Sequence

from redis.exceptions import ClusterError, ReadOnlyError, RedisClusterException, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from realtime.broker import BrokerUnavailable
from realtime.broker.memory import MemoryBroker
from realtime.broker.redisgaps import ChannelGaps
from realtime.broker.redismessages import BadMessage, ChannelNames, decode, encode, wrapHeader
from realtime.broker.redispresence import PresenceKeys, RedisPresence
from realtime.broker.redispubsub import PubSubLink
from realtime.core.channelwire import encodeMessage
from realtime.interfaces import IBatchBroker, IHistoryBroker, IRegistryObserver
from realtime.push.batch import Outcome, oneByOne
from realtime.redisio import Pipeliner, clientFor, firstError
from realtime.redisraw import commandBytes, commandHead
from realtime.store.redis import Publication
from realtime.values import Envelope, PushResult, Retention, ToAll, ToChannel, ToSessions, ToUids

__all__ = ["RedisBroker"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: how many Redis channel names' addresses a node keeps parsed (the
#: uids and channels its sessions hold: parsed again after a clear)
_ADDRESSES_KEPT = 100_000

#: how many uids' names a node keeps made for the pushes it takes (made
#: again after a clear; some 5 MB when full)
_PUSH_NAMES_KEPT = 20_000

#: what a Redis Cluster answers while a master is down or failing over
_CLUSTER_TROUBLE = (ClusterError, SlotNotCoveredError, TryAgainError, ReadOnlyError)


def _unavailable(failure: Failure) -> Failure:
    """
    Say a Redis that cannot be reached as L{BrokerUnavailable}, which the
    ports answer as such (HTTP 503, an C{error:} line) without logging a
    traceback per push; anything else stays what it is (a bug, logged).
    """
    if failure.value is not None and _unreachable(failure.value):
        return Failure(BrokerUnavailable(f"broker unavailable (Redis: {failure.getErrorMessage()})"))
    return failure


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError, *_CLUSTER_TROUBLE)):
        return True
    # redis-py's cluster client with no node reachable ("Redis Cluster
    # cannot be connected") raises this from the last connection error; its
    # other RedisClusterExceptions are a caller's mistakes (keys of several
    # slots), bugs to log
    cause = error.__cause__
    return isinstance(error, RedisClusterException) and cause is not None and _unreachable(cause)


@implementer(IBatchBroker, IRegistryObserver)
class RedisBroker:
    """
    An L{IBroker} over Redis pub/sub, watching C{registry} for what this
    node needs.

    @param client: the C{redis.asyncio} client for commands.
    @param listener: the client whose pub/sub connection receives (the same
        client, or another path to the same Redis).
    @param node: this node's id, new at each start unless given.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        reactor: Any,
        registry: Any,
        fanout: Any,
        *,
        listener: Any = None,
        node: str | None = None,
        prefix: str = "realtime",
        probeInterval: float = 2.0,
        probeTimeout: float = 6.0,
        heartbeatInterval: float = 2.0,
        staleAfter: float = 7.0,
    ) -> None:
        self.node = node or secrets.token_hex(6)
        self.registry = registry
        self._reactor = reactor
        self._history: Any = None
        self._watchHistory: Callable[[Deferred[Any]], Deferred[Any]] = lambda d: d
        self._keepsHistory: Callable[[str], bool] = lambda channel: False
        self._gaps: ChannelGaps | None = None
        self._header = wrapHeader(self.node)
        # what encode puts before a push with no offset, text and binary: a
        # batch's pushes are these plus their payload (0.35 us a push less)
        self._pushHeads = (encode(b"", False, self.node, None, None), encode(b"", True, self.node, None, None))
        self._local = MemoryBroker(registry, fanout)
        self._names = ChannelNames(prefix)
        #: Redis channel name -> what it addresses, for the channels heard
        self._addresses: dict[str, tuple[str, str]] = {}
        #: uid -> its pushes' Redis channel and its counts' key (packed,
        #: L{_pushNamesOf}), for the uids pushed to
        self._pushNames: dict[str, tuple[Any, Any]] = {}
        self._presenceKeys = PresenceKeys(prefix)
        #: per uid and per channel, the presence changes waiting for a
        #: subscription: their chain, and how many are on it
        self._waitingChanges: dict[tuple[str, str], tuple[Deferred[Any], int]] = {}
        self._pipeliner = Pipeliner(client, reactor, failing=_unavailable)
        self._link = PubSubLink(
            client,
            listener or client,
            reactor,
            self._received,
            probeChannel=self._names.node(self.node),
            probeInterval=probeInterval,
            probeTimeout=probeTimeout,
            burst=fanout.burst,
            resubscribed=self._resubscribed,
        )
        self._presence = RedisPresence(
            client,
            reactor,
            self.node,
            self._totals,
            keys=self._presenceKeys,
            heartbeatInterval=heartbeatInterval,
            staleAfter=staleAfter,
            settled=self._link.settled,
        )
        #: the pub/sub commands this broker's messages travel by (classic on
        #: one Redis, sharded on a cluster: L{realtime.redisio.pubsubCommands})
        self.pubsub = self._link.commands
        registry.addObserver(self)

    @classmethod
    def fromURL(cls, url: str, reactor: Any, registry: Any, fanout: Any, **kwargs: Any) -> RedisBroker:
        """
        A broker on the Redis at C{url} (any form of L{realtime.redisio.clientFor}).
        """
        return cls(clientFor(url), reactor, registry, fanout, **kwargs)

    def keepHistoryIn(
        self,
        store: Any,
        watch: Callable[[Deferred[Any]], Deferred[Any]] | None = None,
        keepsHistory: Callable[[str], bool] = lambda channel: True,
        checkInterval: float = 2.0,
    ) -> None:
        """
        Keep channel history in C{store}, a L{realtime.store.redis.RedisMessageStore}
        on the same Redis: from now on this broker is an L{IHistoryBroker},
        and follows the channels C{keepsHistory} names for gaps.  Call it
        before L{start}.

        @param watch: what reports the store's failures
            (L{realtime.store.health.MonitoredStore.watch}).
        @param checkInterval: seconds between the checks for a lost last
            message (L{realtime.broker.redisgaps}).
        """
        self._history = store
        if watch is not None:
            self._watchHistory = watch
        self._keepsHistory = keepsHistory
        self._gaps = ChannelGaps(self._reactor, store, self._deliverChannel, interval=checkInterval)
        alsoProvides(self, IHistoryBroker)

    @property
    def recovered(self) -> int:
        """
        Channel messages this node missed on pub/sub and delivered from the
        history.
        """
        return 0 if self._gaps is None else self._gaps.recovered

    @property
    def problem(self) -> str | None:
        """
        Why pushes cannot reach every node now (Redis unreachable, or the
        pub/sub connection deaf), or cannot be answered right (this node's
        presence in Redis not written back yet after an outage), or C{None}.
        """
        return self._link.problem or self._presence.problem

    def start(self) -> Deferred[None]:
        """
        Subscribe to the channel every node hears and start the heartbeat.
        """
        everyone = self._names.everyone
        self._link.want(everyone)
        if self._gaps is not None:
            self._gaps.start()
        # started means hearing broadcasts: the subscription every node needs
        # is confirmed, not only sent
        started = self._link.start().addCallback(lambda _: self._link.subscribedTo(everyone))
        return gatherResults([started, self._presence.start()], consumeErrors=True).addCallback(lambda _: None)

    def stop(self) -> Deferred[None]:
        """
        Leave the cluster cleanly: presence removed at once, pub/sub closed.
        """
        if self._gaps is not None:
            self._gaps.stop()
        return gatherResults([self._presence.stop(), self._link.stop()], consumeErrors=True).addCallback(
            lambda _: None
        )

    def _resubscribed(self, afterLoss: bool) -> None:
        """
        Redis subscribed this node again after a reconnect: if Redis lost
        its data as well, this node's counts are gone and every push to its
        sessions would be answered as reaching nobody until the next
        heartbeat noticed.  After a connection the link saw fail, rewrite
        them now (whichever master lost them; a rewrite of what is there
        changes nothing).  After a channel only confirmed twice, heartbeat
        instead: one command, which rewrites them if Redis lost this node.
        """
        renewal = self._presence.refresh() if afterLoss else self._presence.heartbeat()
        renewal.addErrback(
            lambda f: self.log.warn("renewing this node's presence failed: {why}", why=f.getErrorMessage())
        )

    def _totals(self) -> dict[str, int]:
        registry = self.registry
        return {"connections": len(registry), "uids": registry.uidCount(), "channels": registry.channelCount()}

    # IRegistryObserver: what this node needs

    def sessionAdded(self, session: Any, first: bool) -> None:
        uid = session.uid
        channel = self._names.uid(uid)
        if first:
            self._link.want(channel)
        # counted once subscribed: a uid any node reads as online is one a
        # push reaches, never answered as reaching nobody
        connected = self._presence.connected
        self._inOrder(("uid", uid), self._link.subscribedTo(channel), lambda: connected(uid), "counting a connection")

    def sessionRemoved(self, session: Any, last: bool) -> None:
        uid = session.uid
        if last:
            self._link.unwant(self._names.uid(uid))
        disconnected = self._presence.disconnected
        self._inOrder(("uid", uid), None, lambda: disconnected(uid), "counting a disconnection")

    def _inOrder(
        self, key: tuple[str, str], after: Deferred[None] | None, change: Callable[[], Deferred[Any]], doing: str
    ) -> None:
        """
        Make C{change} in Redis once C{after} has fired, behind the changes
        of C{key} still waiting for theirs, so that they land in the order
        the sessions and subscriptions came and went.
        """
        waiting = self._waitingChanges.get(key)
        if waiting is None:
            if after is None or after.called:
                change().addErrback(self._lost, doing)
                return
            chain, pending = after, 0
        else:
            chain, pending = waiting
            if after is not None:
                chain.addCallback(lambda _: after)
        self._waitingChanges[key] = (chain, pending + 1)
        chain.addCallback(lambda _: change().addErrback(self._lost, doing)).addBoth(self._changed, key)

    def _changed(self, result: object, key: tuple[str, str]) -> None:
        chain, pending = self._waitingChanges[key]
        if pending == 1:
            del self._waitingChanges[key]
        else:
            self._waitingChanges[key] = (chain, pending - 1)

    def subscribed(self, subscription: Any, first: bool) -> None:
        channel = subscription.channel
        redisChannel = self._names.channel(channel)
        if first:
            self._link.want(redisChannel)
            if self._gaps is not None and self._keepsHistory(channel):
                self._gaps.track(channel)
        # a member once subscribed, as a connection is counted: a publish
        # that counts the member is one its node hears
        joined, member, uid = self._presence.joined, self._memberId(subscription), subscription.uid
        self._inOrder(
            ("channel", channel),
            self._link.subscribedTo(redisChannel),
            lambda: joined(channel, member, uid),
            "recording a subscription",
        )

    def unsubscribed(self, subscription: Any, last: bool) -> None:
        channel = subscription.channel
        if last:
            self._link.unwant(self._names.channel(channel))
            if self._gaps is not None:
                self._gaps.untrack(channel)
        left, member = self._presence.left, self._memberId(subscription)
        self._inOrder(("channel", channel), None, lambda: left(channel, member), "recording an unsubscription")

    @staticmethod
    def _memberId(subscription: Any) -> str:
        sessionId: str = subscription.session.sessionId
        return sessionId

    def _lost(self, reason: Any, doing: str) -> None:
        # the presence of a moment is lost; the next refresh writes it again
        self.log.warn("Redis presence: {doing} failed: {why}", doing=doing, why=reason.getErrorMessage())

    # what comes from Redis

    def _received(self, redisChannel: str, data: bytes) -> None:
        address = self._addresses.get(redisChannel)
        if address is None:
            address = self._names.parse(redisChannel)
            if address is None:
                return
            if len(self._addresses) >= _ADDRESSES_KEPT:
                self._addresses.clear()
            self._addresses[redisChannel] = address
        try:
            message = decode(data)
        except BadMessage:
            self.log.warn("ignored a message that is not ours on {channel}", channel=redisChannel)
            return
        kind, name = address
        if message.wrap:
            if kind == "channel" and message.offset is not None and message.epoch is not None:
                if self._gaps is not None:
                    self._gaps.received(name, message.offset, message.epoch, message.payload)
                else:
                    self._deliverChannel(name, message.offset, message.epoch, message.payload)
            return
        answer: Any
        if kind == "uid":
            # every unicast push from another node: no envelope on the way
            answer = self._local.deliverToUid(name, message.payload, message.isBinary)
        else:
            if kind == "channel":
                target: Any = ToChannel(name)
            elif kind == "all":
                target = ToAll()
            else:
                return
            answer = self._local.publish(Envelope(target, message.payload, message.isBinary, message.offset, message.epoch))
        # not isinstance(answer, Deferred): an ABC's check, once per message
        if not isinstance(answer, (int, PushResult)):
            answer.addErrback(lambda f: self.log.failure("delivering a message from Redis", f))

    def _deliverChannel(self, channel: str, offset: int, epoch: str, data: bytes) -> None:
        """
        Frame a channel's message for its subscribers here and write it.
        """
        wire = encodeMessage(channel, offset, epoch, data)
        answer = self._local.publish(Envelope(ToChannel(channel), wire, False, offset, epoch))
        if not isinstance(answer, PushResult):
            answer.addErrback(lambda f: self.log.failure("delivering a channel message from Redis", f))

    # IHistoryBroker

    def publishStored(self, channel: str, data: bytes, retention: Retention, now: float) -> Deferred[PushResult]:
        """
        Append C{data} to the channel's history and publish it, in one
        script; answered with the channel's subscriptions cluster-wide if
        any node received it (as L{publish} answers), with the offset and
        epoch.
        """
        if self._history is None:
            raise RuntimeError("publishStored needs keepHistoryIn first")
        before, after = self._header
        publication = Publication(
            self.pubsub.publish, self._names.channel(channel), self._presenceKeys.members(channel), before, after
        )

        def answer(result: tuple[Any, int, int]) -> PushResult:
            stored, receivers, members = result
            return PushResult(members if receivers else 0, offset=stored.offset, epoch=stored.epoch)

        appended = self._history.appendPublishing(channel, data, retention, now, publication)
        return self._watchHistory(appended).addCallback(answer)

    # IBroker

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        """
        Publish C{envelope} for every node; see the module docstring for
        what the answer counts.
        """
        target = envelope.target
        if isinstance(target, ToSessions):
            # session ids are this process's own: they are delivered here
            answer = self._local.publish(envelope)
            return answer if isinstance(answer, Deferred) else succeed(answer)
        data = encode(envelope.payload, envelope.isBinary, self.node, envelope.offset, envelope.epoch)
        # the pipeliner words an unreachable Redis (L{_unavailable}) itself
        if isinstance(target, ToUids):
            return self._publishToUids(tuple(dict.fromkeys(target.uids)), data)
        if isinstance(target, ToChannel):
            return self._publishToChannel(target.name, data)
        if isinstance(target, ToAll):
            return self._publishToAll(data)
        raise TypeError(f"unknown target {target!r}")

    def publishBatch(self, envelopes: Sequence[Envelope]) -> Deferred[list[Outcome]]:
        """
        Publish pushes to uids as one pipeline operation, each push
        answered as L{publish} answers it (a command Redis refused fails
        that push alone); a batch with any other target, one by one.
        """
        node, heads = self.node, self._pushHeads
        pushes = []
        for e in envelopes:
            target = e.target
            if not isinstance(target, ToUids):
                return oneByOne(self.publish, envelopes)
            uids = target.uids
            pushes.append(
                (
                    uids if len(uids) == 1 else tuple(dict.fromkeys(uids)),
                    heads[e.isBinary] + e.payload
                    if e.offset is None and e.epoch is None
                    else encode(e.payload, e.isBinary, node, e.offset, e.epoch),
                )
            )
        queueOne, countOne = self._queueToUids, self._countUids

        def queue(pipe: Any) -> int:
            return sum([queueOne(pipe, uids, data) for uids, data in pushes])

        def finish(answers: list[Any]) -> list[Outcome]:
            outcomes: list[Outcome] = []
            start = 0
            if firstError(answers) is None:
                # nearly every batch: no push's answers to look through
                for uids, _ in pushes:
                    outcomes.append(countOne(uids, answers, start))
                    start += 2 * len(uids)
                return outcomes
            for uids, _ in pushes:
                end = start + 2 * len(uids)
                mine, start = answers[start:end], end
                error = firstError(mine)
                outcomes.append(countOne(uids, mine) if error is None else _unavailable(Failure(error)))
            return outcomes

        return self._pipeliner.submit(queue, finish, checked=False)

    def _publishToUids(self, uids: tuple[str, ...], data: bytes) -> Deferred[PushResult]:
        queueOne = self._queueToUids
        return self._pipeliner.submit(lambda pipe: queueOne(pipe, uids, data), partial(self._countUids, uids))

    def _queueToUids(self, pipe: Any, uids: tuple[str, ...], data: bytes) -> int:
        # each uid's PUBLISH, then the connections it holds on each node:
        # the answer counts only what a node received and holds
        named, nameOf = self._pushNames, self._pushNamesOf
        if self._pipeliner.raw:
            # the two commands packed of the uid's parts and the payload,
            # without redis-py's layers (RESP3's HGETALL reply is the map
            # hgetall answers): bench/redisclient.py
            packed = pipe.packed
            for uid in uids:
                head, counts = named.get(uid) or nameOf(uid)
                packed(head, data, counts, 2)
        else:
            publish = self.pubsub.publish
            for uid in uids:
                channel, counts = named.get(uid) or nameOf(uid)
                pipe.execute_command(publish, channel, data)
                pipe.hgetall(counts)
        return 2 * len(uids)

    def _pushNamesOf(self, uid: str) -> tuple[Any, Any]:
        """
        The Redis channel of C{uid}'s pushes and the key of its counts
        (packed for a raw pipeline: the C{PUBLISH} up to its payload, the
        whole C{HGETALL}), kept for the next push to it: made per push,
        they cost more than a dictionary's lookup.
        """
        if len(self._pushNames) >= _PUSH_NAMES_KEPT:
            self._pushNames.clear()
        channel, counts = self._names.uid(uid), self._presenceKeys.connections(uid)
        if self._pipeliner.raw:
            names: tuple[Any, Any] = (commandHead(self.pubsub.publish, channel), commandBytes("HGETALL", counts))
        else:
            names = (channel, counts)
        self._pushNames[uid] = names
        return names

    def _countUids(self, uids: tuple[str, ...], answers: list[Any], start: int = 0) -> PushResult:
        """
        The result of a push to C{uids} from its commands' answers, which
        begin at C{start}.
        """
        dead = self._presence.deadNodes
        if len(uids) == 1 and not dead:
            # nearly every push: one uid, every node alive
            n = sum(map(int, answers[start + 1].values())) if answers[start] else 0
            return PushResult(n, {uids[0]: n})
        counts: dict[str, int] = {}
        for i, uid in enumerate(uids, start // 2):
            receivers, perNode = answers[2 * i], answers[2 * i + 1]
            if not receivers:
                # delivered only where a node took it and holds the uid
                counts[uid] = 0
            elif dead:
                counts[uid] = sum(int(n) for node, n in perNode.items() if _text(node) not in dead)
            else:
                counts[uid] = sum(map(int, perNode.values()))
        return PushResult(sum(counts.values()), counts)

    def _publishToChannel(self, channel: str, data: bytes) -> Deferred[PushResult]:
        redisChannel, members = self._names.channel(channel), self._presenceKeys.members(channel)

        def queue(pipe: Any) -> int:
            pipe.execute_command(self.pubsub.publish, redisChannel, data)
            pipe.hlen(members)
            return 2

        return self._pipeliner.submit(queue, lambda answers: PushResult(int(answers[1]) if answers[0] else 0))

    def _publishToAll(self, data: bytes) -> Deferred[PushResult]:
        # the live nodes' totals are read in the same pipeline, right behind
        # the PUBLISH: one round trip per broadcast
        everyone, publish = self._names.everyone, self.pubsub.publish
        queueTotals, totals = self._presence.statsOperation()

        def queue(pipe: Any) -> int:
            pipe.execute_command(publish, everyone, data)
            return 1 + queueTotals(pipe)

        return self._pipeliner.submit(queue, lambda a: PushResult(int(totals(a[1:]).get("connections", 0))))

    def connectionCount(self, uid: str) -> Deferred[int]:
        """
        How many sessions C{uid} holds on the live nodes of the cluster.
        """
        return self._presence.connectionCount(uid).addErrback(_unavailable)

    def stats(self) -> Deferred[dict[str, Any]]:
        """
        The cluster's totals (summed over live nodes), with this node's
        waiting deliveries.
        """

        def add(totals: dict[str, Any]) -> dict[str, Any]:
            return {**totals, "node": self.node, "pendingDeliveries": self._local.fanout.pending}

        return self._presence.stats().addCallback(add).addErrback(_unavailable)

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        Who is subscribed to C{channel} on the live nodes.
        """
        return self._presence.presence(channel).addErrback(_unavailable)
