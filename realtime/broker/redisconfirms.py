"""
What Redis has confirmed of a node's pub/sub subscriptions: which wanted
channels it subscribed the node to, on which connection, and which a
dropped connection took away until Redis confirms them again; and what
waits for either.

A push is answered delivered only where a node holds the uid and Redis
delivers to it, so the node writes its sessions' counts only once their
channel is confirmed (L{Confirmations.waitFor}), and writes them back after
a reconnect only once every lost channel is confirmed again
(L{Confirmations.settled}).  This is that bookkeeping alone, without I/O:
L{realtime.broker.redispubsub.PubSubLink} tells it what Redis said.  Every
step costs what the change it records touches, never a walk of all the
node's channels: a node can hold 100,000 of them, and a drop or a probe
runs in one reactor turn.
"""

from __future__ import annotations

from typing import Callable, Container

from twisted.internet.defer import Deferred, succeed

__all__ = ["Confirmations"]


class Confirmations:
    """
    The confirmed and the lost channels of one pub/sub link.

    @ivar lost: the confirmed channels dropped connections took away and
        Redis has not confirmed again, each with when it was lost (or last
        found missed).
    """

    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        self._confirmed: set[str] = set()
        #: the confirmed channels by the connection that confirmed them (a
        #: Cluster's master): what a connection that drops takes away,
        #: known without a test of each channel's slot
        self._on: dict[str, set[str]] = {}
        self._waiting: dict[str, list[Deferred[None]]] = {}
        self.lost: dict[str, float] = {}
        #: the lost channels by the connection they were lost with (some
        #: may be confirmed again since: L{lost} says which are still lost)
        self._lostFrom: dict[str, set[str]] = {}
        self._settling: list[Deferred[None]] = []
        #: the connections dropped and not heard confirming anything since
        self._dropping: set[str] = set()

    def __contains__(self, channel: object) -> bool:
        return channel in self._confirmed

    def waitFor(self, channel: str) -> Deferred[None]:
        """
        Fires once C{channel} is confirmed, or nothing waits for it any
        more (L{release}).
        """
        if channel in self._confirmed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.setdefault(channel, []).append(waiter)
        return waiter

    def settled(self) -> Deferred[None]:
        """
        Fires once no channel is lost (at once if none is).
        """
        if not self.lost:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._settling.append(waiter)
        return waiter

    def confirm(self, channel: str, source: str, wanted: bool) -> tuple[bool, bool]:
        """
        Redis confirmed a subscription to C{channel} on connection
        C{source}; kept if the channel is C{wanted}.

        @return: whether this settled the lost channels, and whether the
            channel was confirmed already and not lost (Redis subscribed it
            again by itself: a reconnect that lost nothing).
        """
        self._dropping.discard(source)
        again = channel in self._confirmed and channel not in self.lost
        if wanted:
            self._confirmed.add(channel)
            held = self._on.get(source)
            if held is None:
                held = self._on[source] = set()
            held.add(channel)
        return self.release(channel), again

    def release(self, channel: str) -> bool:
        """
        Nothing waits for C{channel} any more (confirmed, or no longer
        wanted): what waited goes on, and the link has settled once no lost
        channel is left; whether this settled it.  The state is changed
        before anything waiting runs, since that may change it again.
        """
        waiters: list[Deferred[None]] = self._waiting.pop(channel, [])
        settled = False
        if channel in self.lost:
            del self.lost[channel]
            if not self.lost:
                self._lostFrom.clear()
                settled = True
                waiters += self._settling
                self._settling = []
        for waiter in waiters:
            waiter.callback(None)
        return settled

    def unconfirm(self, channel: str) -> None:
        """
        C{channel} is no longer confirmed, on any connection.
        """
        self._confirmed.discard(channel)
        for held in self._on.values():
            held.discard(channel)

    def dropped(self, name: str) -> None:
        """
        Connection C{name} is gone, and with it the subscriptions on it:
        they are not confirmed until Redis confirms them again.  Recorded
        once a failure, not at each failed read of an outage: nothing on
        C{name} is confirmed again before Redis answers on it.
        """
        if name in self._dropping:
            return
        self._dropping.add(name)
        # set operations in C, proportional to what the connection held
        # (on one Redis, every channel: 0.3x the time of a test per
        # channel at 100,000; on a Cluster, no slot computed per channel)
        lost = self._on.pop(name, set()) & self._confirmed
        self._confirmed -= lost
        self.lost.update(dict.fromkeys(lost, self._seconds()))
        if lost:
            self._lostFrom.setdefault(name, set()).update(lost)

    def missed(
        self, name: str, heardAt: float, connections: Container[str], owner: Callable[[str], str | None]
    ) -> set[str]:
        """
        The lost channels connection C{name} missed, now that its probe
        came back (at C{heardAt}): redis-py subscribes again to all a
        connection held before anything else when it reconnects, so the
        probe's message comes after every confirmation of that, and a
        channel lost with this connection before and still unconfirmed is
        one it missed.  Each is marked lost since C{heardAt}.

        The channels lost with this connection are known, so while a
        Cluster's master is down each probe of the others costs nothing
        per channel it took away (a slot computed per lost channel costs
        some 1.4 us: 46 ms a probe at 33,000).  Only those lost with a
        connection not among C{connections} any more (a master failed
        over) are found by their slot's C{owner} now.
        """
        lost = self.lost
        missed = {channel for channel in self._lostFrom.get(name, ()) if lost.get(channel, heardAt) < heardAt}
        for source, channels in self._lostFrom.items():
            if source != name and source not in connections:
                missed.update(c for c in channels if lost.get(c, heardAt) < heardAt and owner(c) == name)
        for channel in missed:
            lost[channel] = heardAt
        return missed
