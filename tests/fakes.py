"""
Verified fakes shared by the tests: each provides the real interface and is
checked with C{verifyObject} in C{tests/test_fakes.py}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from realtime import closecodes
from realtime.delivery import Frame
from realtime.interfaces import IBroker, ISession
from realtime.values import Envelope, Identity, PushResult


@implementer(ISession)
class FakeSession:
    """
    A session that records what it was sent instead of writing to a socket.

    @ivar sent: C{(payload, isBinary)} of each frame, in order.
    @ivar closed: C{(code, reason)} once closed.
    """

    def __init__(self, uid: str, sessionId: str | None = None, *, open: bool = True) -> None:
        self.identity = Identity(uid=uid)
        self.uid = uid
        self.sessionId = sessionId or f"{uid}#{id(self):x}"
        self.open = open
        self.sent: list[tuple[bytes, bool]] = []
        self.closed: tuple[int, str] | None = None

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Record C{frame} if open.
        """
        if not self.open:
            return False
        self.sent.append((frame.payload, frame.isBinary))
        return True

    def close(self, code: int = closecodes.NORMAL, reason: str = "") -> None:
        """
        Record the close.
        """
        self.open = False
        self.closed = (code, reason)

    @property
    def texts(self) -> list[str]:
        """
        The text frames received, decoded.
        """
        return [p.decode("utf-8") for p, b in self.sent if not b]


@implementer(IBroker)
class ManualBroker:
    """
    A broker whose publish Deferreds the test fires by hand, in any order.

    @ivar published: C{(envelope, deferred)} for each publish, in order.
    """

    def __init__(self) -> None:
        self.published: list[tuple[Envelope, Deferred[PushResult]]] = []

    def publish(self, envelope: Envelope) -> Deferred[PushResult]:
        d: Deferred[PushResult] = Deferred()
        self.published.append((envelope, d))
        return d

    def connectionCount(self, uid: str) -> Deferred[int]:
        return succeed(0)

    def stats(self) -> Deferred[dict[str, Any]]:
        return succeed({})
