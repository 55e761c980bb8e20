"""
The sessions of this process, indexed by id and by uid.

Pure bookkeeping: no I/O and no reactor, so the whole push path can be tested
with plain objects.  One uid may hold many sessions (tabs, phone and PC); a
session leaves every index in one call.
"""

from __future__ import annotations

from typing import Collection

from zope.interface import implementer

from realtime.interfaces import ISession, ISessionRegistry


@implementer(ISessionRegistry)
class SessionRegistry:
    """
    Sessions by id and by uid, in the order they joined.
    """

    __slots__ = ("_byId", "_byUid")

    def __init__(self) -> None:
        self._byId: dict[str, ISession] = {}
        self._byUid: dict[str, list[ISession]] = {}

    def add(self, session: ISession) -> None:
        """
        Index C{session}; adding it twice changes nothing.
        """
        if session.sessionId in self._byId:
            return
        self._byId[session.sessionId] = session
        peers = self._byUid.get(session.uid)
        if peers is None:
            self._byUid[session.uid] = [session]
        else:
            peers.append(session)

    def discard(self, session: ISession) -> None:
        """
        Forget C{session} in every index; a session never added is ignored.
        """
        if self._byId.get(session.sessionId) is not session:
            return
        del self._byId[session.sessionId]
        peers = self._byUid[session.uid]
        if len(peers) == 1:
            del self._byUid[session.uid]
        else:
            peers.remove(session)

    def get(self, sessionId: str) -> ISession | None:
        """
        The session with id C{sessionId}, or C{None}.
        """
        return self._byId.get(sessionId)

    def sessionsOf(self, uid: str) -> Collection[ISession]:
        """
        The sessions of C{uid}, as a snapshot the caller may iterate while
        sessions come and go.
        """
        peers = self._byUid.get(uid)
        return tuple(peers) if peers else ()

    def allSessions(self) -> Collection[ISession]:
        """
        Every session, as a snapshot.
        """
        return tuple(self._byId.values())

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
