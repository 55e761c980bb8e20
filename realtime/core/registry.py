"""
The sessions of this process, indexed by id and by uid.

Pure bookkeeping: no I/O and no reactor, so the whole push path can be tested
with plain objects.  One uid may hold many sessions (tabs, phone and PC); a
session leaves every index in one call.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

from zope.interface import implementer

from realtime.interfaces import ISession, ISessionRegistry


@implementer(ISessionRegistry)
class SessionRegistry:
    """
    Sessions by id and by uid, in the order they joined.
    """

    __slots__ = ("_byId", "_byUid", "_channels", "_present", "_all", "_observers")

    def __init__(self) -> None:
        #: told of every change (L{IRegistryObserver}); empty unless a
        #: broker for several nodes watches, which costs the rest nothing
        self._observers: tuple[Any, ...] = ()
        self._byId: dict[str, ISession] = {}
        # the snapshot allSessions() hands out, until sessions change: many
        # broadcasts between two connects share it, which lets the fan-out
        # write their frames to each session together
        self._all: tuple[ISession, ...] | None = None
        self._byUid: dict[str, list[ISession]] = {}
        # channel -> subscriptions (an insertion-ordered set)
        self._channels: dict[str, dict[Any, None]] = {}
        # channel -> uid -> how many of the uid's subscriptions are in it
        self._present: dict[str, dict[str, int]] = {}

    def addObserver(self, observer: Any) -> None:
        """
        Tell C{observer} (an L{IRegistryObserver}) of every change from now on.
        """
        self._observers = (*self._observers, observer)

    def add(self, session: ISession) -> None:
        """
        Index C{session}; adding it twice changes nothing.
        """
        if session.sessionId in self._byId:
            return
        self._byId[session.sessionId] = session
        self._all = None
        peers = self._byUid.get(session.uid)
        if peers is None:
            self._byUid[session.uid] = [session]
        else:
            peers.append(session)
        for observer in self._observers:
            observer.sessionAdded(session, peers is None)

    def discard(self, session: ISession) -> None:
        """
        Forget C{session} in every index; a session never added is ignored.
        """
        if self._byId.get(session.sessionId) is not session:
            return
        del self._byId[session.sessionId]
        self._all = None
        peers = self._byUid[session.uid]
        last = len(peers) == 1
        if last:
            del self._byUid[session.uid]
        else:
            peers.remove(session)
        for observer in self._observers:
            observer.sessionRemoved(session, last)

    def get(self, sessionId: str) -> ISession | None:
        """
        The session with id C{sessionId}, or C{None}.
        """
        return self._byId.get(sessionId)

    def sessionsOf(self, uid: str) -> Sequence[ISession]:
        """
        The sessions of C{uid}, as a snapshot the caller may iterate while
        sessions come and go.
        """
        peers = self._byUid.get(uid)
        return tuple(peers) if peers else ()

    def hasSessions(self, uid: str) -> bool:
        """
        Whether C{uid} holds a session (no snapshot made).
        """
        return uid in self._byUid

    def allSessions(self) -> Sequence[ISession]:
        """
        Every session, as a snapshot (the same object until sessions change).
        """
        if self._all is None:
            self._all = tuple(self._byId.values())
        return self._all

    def uids(self) -> Collection[str]:
        """
        Every uid holding a session, as a snapshot.
        """
        return tuple(self._byUid)

    def uidCount(self) -> int:
        """
        How many distinct uids hold a session.
        """
        return len(self._byUid)

    def __len__(self) -> int:
        return len(self._byId)

    # -- channels --------------------------------------------------------------

    def subscribe(self, subscription: Any) -> bool:
        """
        Index C{subscription} (with C{channel}, C{uid} and C{sendPrepared})
        under its channel.

        @return: whether its uid just became present in the channel (its
            first subscription there): the moment to announce a join.
        """
        members = self._channels.get(subscription.channel)
        first = members is None
        if members is None:
            members = self._channels[subscription.channel] = {}
            self._present[subscription.channel] = {}
        if subscription in members:
            return False
        members[subscription] = None
        present = self._present[subscription.channel]
        count = present.get(subscription.uid, 0)
        present[subscription.uid] = count + 1
        for observer in self._observers:
            observer.subscribed(subscription, first)
        return count == 0

    def unsubscribe(self, subscription: Any) -> bool:
        """
        Forget C{subscription}.

        @return: whether its uid just left the channel (its last
            subscription there): the moment to announce a leave.
        """
        members = self._channels.get(subscription.channel)
        if members is None or subscription not in members:
            return False
        del members[subscription]
        present = self._present[subscription.channel]
        count = present[subscription.uid] - 1
        if count:
            present[subscription.uid] = count
        else:
            del present[subscription.uid]
        if not members:
            del self._channels[subscription.channel]
            del self._present[subscription.channel]
        for observer in self._observers:
            observer.unsubscribed(subscription, not members)
        return count == 0

    def subscribersOf(self, channel: str) -> Sequence[Any]:
        """
        The subscriptions of C{channel}, as a snapshot.
        """
        members = self._channels.get(channel)
        return tuple(members) if members else ()

    def presenceOf(self, channel: str) -> dict[str, int]:
        """
        The uids subscribed to C{channel}, each with its subscription count.
        """
        return dict(self._present.get(channel, {}))

    def channelCount(self) -> int:
        """
        How many channels have at least one subscriber.
        """
        return len(self._channels)
