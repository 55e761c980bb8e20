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
from realtime.values import Envelope, PushResult, Target, ToAll, ToChannel, ToSessions, ToUids


@implementer(IBroker)
class MemoryBroker:
    """
    Delivers each envelope to the sessions it addresses in C{registry}.
    """

    def __init__(self, registry: SessionRegistry, fanout: Fanout) -> None:
        self.registry = registry
        self.fanout = fanout

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        """
        Frame C{envelope} once and write it to every session it addresses.
        """
        frame = Frame(envelope.payload, envelope.isBinary)
        target = envelope.target
        registry = self.registry
        if isinstance(target, ToUids):
            if len(target.uids) == 1:
                uid = target.uids[0]
                return self.fanout.deliver(registry.sessionsOf(uid), frame).addCallback(
                    lambda n: PushResult(n, {uid: n})
                )
            return self._publishToUids(tuple(dict.fromkeys(target.uids)), frame)
        if isinstance(target, ToChannel):
            frame.offset = envelope.offset
            sessions = registry.subscribersOf(target.name)
        elif isinstance(target, ToAll):
            sessions = registry.allSessions()
        elif isinstance(target, ToSessions):
            sessions = tuple(
                s for s in map(registry.get, dict.fromkeys(target.ids)) if s is not None
            )
        else:
            raise TypeError(f"unknown target {target!r}")
        return self.fanout.deliver(sessions, frame).addCallback(PushResult)

    def _publishToUids(self, uids: tuple[str, ...], frame: Frame) -> Deferred[PushResult]:
        """
        Deliver to many uids as one job of the fan-out, one step per uid: a
        push to 10,000 uids takes a bounded share of each reactor turn, and
        is answered once its last uid is written to.
        """
        counts: dict[str, int] = {}
        sessionsOf = self.registry.sessionsOf
        write = self.fanout.write

        def step(uid: str) -> int:
            sessions = sessionsOf(uid)
            counts[uid] = write(sessions, frame) if sessions else 0
            return 1 + len(sessions)

        return self.fanout.each(uids, step).addCallback(lambda _: PushResult(sum(counts.values()), counts))

    def pushNow(self, target: Target, payload: bytes, isBinary: bool) -> int | None:
        """
        L{publish} without Deferreds or result objects, for the line port's
        hot path: how many sessions got it, or C{None} (and nothing
        delivered) when the delivery must wait behind a chunked one.
        """
        fanout = self.fanout
        if fanout.pending:
            return None
        registry = self.registry
        if type(target) is ToUids:
            uids = target.uids
            if len(uids) == 1:
                # one uid (nearly every push): no intermediate collections
                sessions = registry.sessionsOf(uids[0])
                return fanout.deliverNow(sessions, Frame(payload, isBinary)) if sessions else 0
            if len(uids) > fanout.chunkSize:
                return None
            audiences = [registry.sessionsOf(uid) for uid in dict.fromkeys(uids)]
            if len(audiences) + sum(len(a) for a in audiences) > fanout.chunkSize:
                return None
            frame = Frame(payload, isBinary)
            return sum(fanout.deliverNow(a, frame) or 0 for a in audiences)
        if type(target) is ToAll:
            return fanout.deliverNow(registry.allSessions(), Frame(payload, isBinary))
        return None

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
