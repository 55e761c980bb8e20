"""
The single-process broker: a push reaches the sessions of this process.

It is the embedded default and the reference any scale-out broker must
match: same answers, one node.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout, Frame
from realtime.interfaces import IBroker
from realtime.values import Envelope, PushResult, ToAll, ToChannel, ToSessions, ToUids


@implementer(IBroker)
class MemoryBroker:
    """
    Delivers each envelope to the sessions it addresses in C{registry}.

    @ivar problem: always C{None}: a broker in the process cannot be cut
        off from it.
    """

    problem: str | None = None

    def __init__(self, registry: SessionRegistry, fanout: Fanout) -> None:
        self.registry = registry
        self.fanout = fanout

    def publish(self, envelope: Envelope) -> PushResult | Deferred[PushResult]:
        """
        Frame C{envelope} once and write it to every session it addresses:
        at once (the answer is the result itself) unless the fan-out has
        deliveries waiting or the audience is too large for one chunk.
        """
        target = envelope.target
        registry = self.registry
        fanout = self.fanout
        if type(target) is ToUids:
            uids = target.uids
            if len(uids) == 1:
                return self.publishToUid(uids[0], envelope.payload, envelope.isBinary)
            return self._publishToUids(tuple(dict.fromkeys(uids)), Frame(envelope.payload, envelope.isBinary))
        frame = Frame(envelope.payload, envelope.isBinary)
        if type(target) is ToChannel:
            frame.offset = envelope.offset
            frame.epoch = envelope.epoch
            sessions = registry.subscribersOf(target.name)
        elif type(target) is ToAll:
            sessions = registry.allSessions()
        elif type(target) is ToSessions:
            sessions = tuple(s for s in map(registry.get, dict.fromkeys(target.ids)) if s is not None)
        else:
            raise TypeError(f"unknown target {target!r}")
        n = fanout.deliverNow(sessions, frame)
        if n is not None:
            return PushResult(n)
        return fanout.deliver(sessions, frame).addCallback(PushResult)

    def publishToUid(self, uid: str, payload: bytes, isBinary: bool = False) -> PushResult | Deferred[PushResult]:
        """
        L{publish} to one uid (nearly every push), without an envelope or
        intermediate collections.
        """
        n = self.deliverToUid(uid, payload, isBinary)
        if isinstance(n, int):
            return PushResult(n, {uid: n})
        return n.addCallback(lambda n: PushResult(n, {uid: n}))

    def deliverToUid(self, uid: str, payload: bytes, isBinary: bool = False) -> int | Deferred[int]:
        """
        Write to C{uid}'s sessions here and say to how many, with no answer
        made for a backend: the path of every uid push another node sends
        through Redis, whose answer that node gave already.
        """
        fanout = self.fanout
        frame = Frame(payload, isBinary)
        sessions = self.registry.sessionsOf(uid)
        n = fanout.deliverNow(sessions, frame)
        return fanout.deliver(sessions, frame) if n is None else n

    def _publishToUids(self, uids: tuple[str, ...], frame: Frame) -> PushResult | Deferred[PushResult]:
        """
        Deliver to many uids: at once while the uids and their sessions fit
        in one chunk and nothing waits, otherwise as one job of the fan-out,
        one step per uid (a push to 10,000 uids takes a bounded share of
        each reactor turn, and is answered once its last uid is written to).
        """
        counts: dict[str, int] = {}
        sessionsOf = self.registry.sessionsOf
        fanout = self.fanout
        write = fanout.write
        if not fanout.pending and len(uids) <= fanout.chunkSize:
            audiences = [sessionsOf(uid) for uid in uids]
            if len(audiences) + sum(map(len, audiences)) <= fanout.chunkSize:
                for uid, sessions in zip(uids, audiences, strict=True):
                    counts[uid] = write(sessions, frame) if sessions else 0
                return PushResult(sum(counts.values()), counts)

        def step(uid: str) -> int:
            sessions = sessionsOf(uid)
            counts[uid] = write(sessions, frame) if sessions else 0
            return 1 + len(sessions)

        return fanout.each(uids, step).addCallback(lambda _: PushResult(sum(counts.values()), counts))

    def connectionCount(self, uid: str) -> Deferred[int]:
        """
        How many sessions C{uid} holds here.
        """
        return succeed(len(self.registry.sessionsOf(uid)))

    def stats(self) -> Deferred[dict[str, Any]]:
        """
        Connection and uid counts of this process.
        """
        return succeed(
            {
                "connections": len(self.registry),
                "uids": self.registry.uidCount(),
                "channels": self.registry.channelCount(),
                "pendingDeliveries": self.fanout.pending,
            }
        )

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        Who is subscribed to C{channel} here.
        """
        uids = self.registry.presenceOf(channel)
        return succeed({"channel": channel, "uids": uids, "connections": sum(uids.values())})
