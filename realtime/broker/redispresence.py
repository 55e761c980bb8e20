"""
Who is connected, cluster-wide, kept in Redis: connections per uid, channel
presence, node totals, and which nodes are alive.

Every node writes only its own fields (its node id names them) and reads
everyone's, leaving out the nodes known dead.  A node is alive while its
heartbeat, stamped with Redis's own clock (C{TIME}, so the nodes' clocks
need not agree), is younger than C{staleAfter}; a node killed with SIGKILL
stops being counted once its heartbeat is that old plus at most one
heartbeat interval of the reader's cached view - under 10 seconds with the
defaults - and its fields are removed by whoever reads them next (prune on
read).  Only nodes a heartbeat found stale count as dead: a node that
started since the reader's last heartbeat is not in its view yet, and its
fields count (pruning them, as an early version did, erased a new node's
sessions until its next refresh).  Keys no live node holds expire by themselves: each node rewrites its
fields with a fresh expiry every C{refreshInterval}.  What Redis lost or
missed is written back sooner, at the first heartbeat Redis answers after a
write of this node failed (Redis unreachable) or after the heartbeat found
the node gone from Redis (restarted without its data), and as soon as
Redis has subscribed the node again after a lost pub/sub connection (the
broker asks); never before that, since a count ahead of its subscription
answers a push delivered that nobody hears.  Until then the
presence has a C{problem}, which the broker reports (C{/readyz} is 503),
because a push meanwhile would count the connections Redis has, not the
connections there are.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Iterable

from redis.commands.core import AsyncScript
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from realtime.broker import redissteps as steps
from realtime.redisio import Pipeliner, channelKey, uidKey

__all__ = ["RedisPresence", "PresenceKeys"]

#: KEYS: the live nodes sorted set, this node's totals hash, the dead nodes
#: sorted set.  ARGV: node, staleAfter (ms), totals expiry (s), then
#: field/value pairs of totals.  Stamps the heartbeat with Redis's clock,
#: moves nodes gone stale to the dead set (kept an hour, long after their
#: fields expired), answers {live nodes, dead nodes, 1 if this node was not
#: in the live set}.
_HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if #ARGV > 3 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local stale = '(' .. (ms - tonumber(ARGV[2]))
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stale)) do
  redis.call('ZADD', KEYS[3], ms, node)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stale)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ms - 3600000))
return {redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[3], 0, -1), added}
"""

#: KEYS: a per-node hash.  ARGV: node-field, delta, expiry.  Adds C{delta}
#: to this node's count, removing the field at zero.
_COUNT = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return n
"""


class PresenceKeys:
    """
    The key names, under one prefix; a uid's and a channel's presence keys
    carry the hash tags of the Redis store's keys for them, and the nodes'
    keys (alive, dead, each node's totals) share C{{nodes}}, so the heartbeat
    script runs on one slot of a Redis Cluster and L{RedisPresence.stats}
    reads one master.
    """

    def __init__(self, prefix: str = "realtime") -> None:
        self.prefix = prefix
        self.nodes = f"{prefix}:{{nodes}}:alive"
        self.dead = f"{prefix}:{{nodes}}:dead"

    def totals(self, node: str) -> str:
        return f"{self.prefix}:{{nodes}}:node:{node}"

    def connections(self, uid: str) -> str:
        return uidKey(self.prefix, uid, "conns")

    def members(self, channel: str) -> str:
        return channelKey(self.prefix, channel, "members")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """
    This node's share of the cluster's presence, and reads of the whole.

    @param node: this node's id, unique in the cluster (a new one per start).
    @param totals: called at each heartbeat for this node's counters
        (C{connections}, C{uids}, C{channels}, ...), published for
        L{stats}.
    @param settled: what a rewrite of this node's fields waits for: the
        pub/sub link's L{realtime.broker.redispubsub.PubSubLink.settled},
        so a count comes back to Redis only once the node hears its uid
        again (never a push answered delivered to a node still deaf to it).
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        reactor: Any,
        node: str,
        totals: Any = lambda: {},
        *,
        keys: PresenceKeys | None = None,
        heartbeatInterval: float = 2.0,
        staleAfter: float = 7.0,
        refreshInterval: float = 20.0,
        keyExpiry: int = 60,
        settled: Callable[[], Deferred[None]] = lambda: succeed(None),
    ) -> None:
        self.node = node
        self._pipeliner = Pipeliner(client, reactor)
        self._keys = keys or PresenceKeys()
        self._totals = totals
        self._settled = settled
        self._staleMs = int(staleAfter * 1000)
        self._expiry = keyExpiry
        self._heartbeat = AsyncScript(client, _HEARTBEAT)
        self._count = AsyncScript(client, _COUNT)
        self._uids: dict[str, int] = {}
        self._members: dict[str, dict[str, str]] = {}
        #: the live nodes and the dead ones as the last heartbeat saw them; a
        #: node in neither started since, and counts (it is not dead)
        self.liveNodes: frozenset[str] = frozenset({node})
        self.deadNodes: frozenset[str] = frozenset()
        self._beat = LoopingCall(self._quietly, self.heartbeat, "heartbeat")
        self._beat.clock = reactor
        self._heartbeatInterval = heartbeatInterval
        self._refresh = LoopingCall(self._quietly, self.refresh, "refresh")
        self._refresh.clock = reactor
        self._refreshInterval = refreshInterval
        #: why this node's share in Redis may be wrong now, until it is
        #: written back; C{None} while it is right
        self.problem: str | None = None
        self._failures = 0
        self._repairing = False
        self._beaten = False
        # what a failed write left in Redis that this node may no longer hold
        self._owedUids: set[str] = set()
        self._owedMembers: dict[str, set[str]] = {}

    def _quietly(self, operation: Any, name: str) -> Deferred[None]:
        """
        Run one periodic C{operation}; its failure (Redis unreachable) is
        said and the loop goes on, so the node is back as soon as Redis is.
        """
        return operation().addErrback(
            lambda f: self.log.warn("Redis presence {name} failed: {why}", name=name, why=f.getErrorMessage())
        )

    def start(self) -> Deferred[None]:
        """
        Heartbeat now and every interval; rewrite this node's fields every
        refresh interval.  Fires once the first heartbeat is answered.
        """
        first = self.heartbeat()
        self._beat.start(self._heartbeatInterval, now=False).addErrback(lambda f: self.log.failure("presence heartbeat", f))
        self._refresh.start(self._refreshInterval, now=False).addErrback(lambda f: self.log.failure("presence refresh", f))
        return first

    def stop(self) -> Deferred[None]:
        """
        Stop beating and remove this node's fields, so the others stop
        counting it at once rather than when its heartbeat goes stale.
        """
        for loop in (self._beat, self._refresh):
            if loop.running:
                loop.stop()
        keys = self._keys
        # the node out of the live set first, so the others stop counting
        # it at once; then its fields, a step at a time
        commands = chain(
            [("ZREM", keys.nodes, self.node), ("DEL", keys.totals(self.node))],
            steps.removedCounts(keys, self.node, list(self._uids)),
            steps.removedMembers(keys, dict(self._members)),
        )

        def leftBehind(reason: Failure) -> None:
            # a node stopping while Redis is unreachable still stops
            self.log.warn(
                "could not remove this node's presence from Redis ({why}); the other nodes stop counting it "
                "when its heartbeat goes stale",
                why=reason.getErrorMessage(),
            )

        done = steps.inSteps(self._pipeliner, commands).addErrback(leftBehind)
        return done.addBoth(lambda result: self._pipeliner.close().addCallback(lambda _: result))

    # this node's changes

    def connected(self, uid: str) -> Deferred[int]:
        """
        One more session of C{uid} here.
        """
        self._uids[uid] = self._uids.get(uid, 0) + 1
        return self._add(uid, 1).addErrback(self._owe, uid)

    def disconnected(self, uid: str) -> Deferred[int]:
        """
        One session fewer of C{uid} here.
        """
        left = self._uids.get(uid, 0) - 1
        if left > 0:
            self._uids[uid] = left
        else:
            self._uids.pop(uid, None)
        return self._add(uid, -1).addErrback(self._owe, uid)

    def _add(self, uid: str, delta: int) -> Deferred[int]:
        key = self._keys.connections(uid)
        return self._pipeliner.submit(
            lambda pipe: self._pipeliner.script(pipe, self._count, [key], [self.node, delta, self._expiry]),
            lambda answers: int(answers[0]),
        )

    def joined(self, channel: str, sessionId: str, uid: str) -> Deferred[None]:
        """
        A session of this node subscribed to C{channel} as C{uid}.
        """
        field = f"{self.node}/{sessionId}"
        self._members.setdefault(channel, {})[field] = uid
        key = self._keys.members(channel)

        def queue(pipe: Any) -> int:
            pipe.hset(key, field, uid)
            pipe.expire(key, self._expiry)
            return 2

        return self._pipeliner.submit(queue, lambda answers: None).addErrback(self._owe, None, channel, field)

    def left(self, channel: str, sessionId: str) -> Deferred[None]:
        """
        A session of this node left C{channel}.
        """
        field = f"{self.node}/{sessionId}"
        members = self._members.get(channel)
        if members is not None:
            members.pop(field, None)
            if not members:
                del self._members[channel]
        key = self._keys.members(channel)
        left = self._pipeliner.submit(lambda pipe: (pipe.hdel(key, field), 1)[1], lambda answers: None)
        return left.addErrback(self._owe, None, channel, field)

    def _owe(self, reason: Failure, uid: str | None, channel: str | None = None, field: str = "") -> Failure:
        """
        A write of this node's share failed: remember what to write back at
        the next heartbeat Redis answers, and say so meanwhile.
        """
        self._failures += 1
        self.problem = f"Redis presence not written: {reason.getErrorMessage()}"
        if uid is not None:
            self._owedUids.add(uid)
        if channel is not None:
            self._owedMembers.setdefault(channel, set()).add(field)
        return reason

    def heartbeat(self) -> Deferred[None]:
        """
        Stamp this node alive with its totals; learn who else is.
        """
        totals = [str(x) for pair in dict(self._totals()).items() for x in pair]
        keys = [self._keys.nodes, self._keys.totals(self.node), self._keys.dead]
        args = [self.node, self._staleMs, self._expiry, *totals]

        def alive(answers: list[Any]) -> None:
            live, dead, added = answers[0]
            self.liveNodes = frozenset(_text(n) for n in live)
            self.deadNodes = frozenset(_text(n) for n in dead)
            if added and self._beaten:
                self._failures += 1
                self.problem = "Redis lost this node's presence (restarted without its data?)"
            self._beaten = True
            if self.problem is not None:
                self._repair()

        def failed(reason: Failure) -> Failure:
            self._failures += 1
            self.problem = f"Redis presence heartbeat failed: {reason.getErrorMessage()}"
            return reason

        beat = self._pipeliner.submit(lambda pipe: self._pipeliner.script(pipe, self._heartbeat, keys, args), alive)
        return beat.addErrback(failed)

    def _repair(self) -> None:
        """
        Write this node's share back; the problem is gone if no other write
        failed meanwhile.
        """
        if self._repairing:
            return
        self._repairing = True
        failures = self._failures

        def repaired(_: object) -> None:
            if self._failures == failures:
                self.problem = None

        def done(result: object) -> None:
            self._repairing = False

        self.refresh().addCallbacks(repaired, lambda f: None).addBoth(done)

    def refresh(self) -> Deferred[None]:
        """
        Rewrite this node's fields with a fresh expiry, once the pub/sub
        link has settled: keys no live node refreshes expire (a node that
        stays deaf stops being counted), and what Redis lost comes back.
        """
        return self._settled().addCallback(lambda _: self._rewrite())

    def _rewrite(self) -> Deferred[None]:
        # a step at a time (realtime.broker.redissteps): a big node's share
        # is too much for one reactor turn and one pipeline
        keys, held, heldMembers = self._keys, self._uids, self._members
        goneUids = [uid for uid in self._owedUids if uid not in held]
        goneMembers = {c: [f for f in owed if f not in heldMembers.get(c, {})] for c, owed in self._owedMembers.items()}
        self._owedUids, self._owedMembers = set(), {}
        commands = chain(
            steps.counts(keys, self.node, self._expiry, held),
            steps.members(keys, self._expiry, heldMembers),
            steps.removedCounts(keys, self.node, goneUids, held),
            steps.removedMembers(keys, goneMembers, heldMembers),
        )

        def failed(reason: Failure) -> Failure:
            # still owed: the next repair or refresh tries again
            self._owedUids.update(goneUids)
            for channel, gone in goneMembers.items():
                self._owedMembers.setdefault(channel, set()).update(gone)
            return reason

        return steps.inSteps(self._pipeliner, commands).addErrback(failed)

    # the cluster's view

    def _prune(self, key: str, fields: Iterable[str]) -> None:
        dead = list(fields)
        if dead:
            self._pipeliner.submit(lambda pipe: (pipe.hdel(key, *dead), 1)[1], lambda answers: None).addErrback(
                lambda f: None
            )

    def connectionCount(self, uid: str) -> Deferred[int]:
        """
        How many sessions C{uid} holds on live nodes.
        """
        key = self._keys.connections(uid)

        def count(answers: list[Any]) -> int:
            live, dead = 0, []
            for node, n in answers[0].items():
                if _text(node) in self.deadNodes:
                    dead.append(_text(node))
                else:
                    live += int(n)
            self._prune(key, dead)
            return live

        return self._pipeliner.submit(lambda pipe: (pipe.hgetall(key), 1)[1], count)

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        Who is subscribed to C{channel} on live nodes, in the shape of
        L{realtime.interfaces.IBroker.presence}.
        """
        key = self._keys.members(channel)

        def members(answers: list[Any]) -> dict[str, Any]:
            uids: dict[str, int] = {}
            dead = []
            for field, uid in answers[0].items():
                name = _text(field)
                if name.partition("/")[0] in self.deadNodes:
                    dead.append(name)
                else:
                    uids[_text(uid)] = uids.get(_text(uid), 0) + 1
            self._prune(key, dead)
            return {"channel": channel, "uids": uids, "connections": sum(uids.values())}

        return self._pipeliner.submit(lambda pipe: (pipe.hgetall(key), 1)[1], members)

    def stats(self) -> Deferred[dict[str, Any]]:
        """
        The live nodes' totals, summed, with how many nodes there are.
        """
        if not self.liveNodes:
            return succeed({"nodes": 0})
        queue, total = self.statsOperation()
        return self._pipeliner.submit(queue, total)

    def statsOperation(self) -> tuple[Callable[[Any], int], Callable[[list[Any]], dict[str, Any]]]:
        """
        L{stats} as the two halves of a pipelined operation (what it queues,
        what it makes of the answers), for a caller that reads the totals in
        its own pipeline, behind its own commands.
        """
        nodes = sorted(self.liveNodes)

        def queue(pipe: Any) -> int:
            for node in nodes:
                pipe.hgetall(self._keys.totals(node))
            return len(nodes)

        def total(answers: list[Any]) -> dict[str, Any]:
            summed: dict[str, Any] = {"nodes": len(nodes)}
            for answer in answers:
                for name, value in answer.items():
                    try:
                        number = int(value)
                    except ValueError:
                        continue
                    summed[_text(name)] = summed.get(_text(name), 0) + number
            return summed

        return queue, total
