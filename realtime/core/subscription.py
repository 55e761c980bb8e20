"""
One session's subscription to one channel, and the seam between history
and live messages.

A subscription is indexed under its channel the moment it is asked for, and
holds live messages back while history is being read.  When the history
arrives it is written first, then the held live messages, skipping any
whose offset was already written: nothing published during a resume is lost
or doubled.  Afterwards offsets only go up, so a late duplicate (the same
message arriving twice through a broker) is dropped as well - within an
epoch: a frame of another epoch than the last one written (the channel's
history was lost, a Redis restarted without its data) starts the offsets
over, or a subscriber would drop every new message up to its old offset.
"""

from __future__ import annotations

from typing import Iterable

from realtime.delivery.fanout import Frame
from realtime.interfaces import ISession


class Subscription:
    """
    Delivers a channel's frames to a session, in offset order, once each.

    Frames without an offset (namespaces that keep no history) are written
    as they come.
    """

    __slots__ = ("session", "channel", "lastOffset", "epoch", "_held")

    def __init__(self, session: ISession, channel: str) -> None:
        self.session = session
        self.channel = channel
        self.lastOffset = 0
        #: the epoch of C{lastOffset}, once known
        self.epoch: str | None = None
        self._held: list[Frame] | None = []

    @property
    def uid(self) -> str:
        """
        The subscribing uid.
        """
        return self.session.uid

    @property
    def holding(self) -> bool:
        """
        Whether live frames are still being held back for history.
        """
        return self._held is not None

    def heldOffsets(self) -> list[int]:
        """
        Offsets of the frames held back so far.
        """
        return [f.offset for f in self._held or () if f.offset is not None]

    def sendPrepared(self, frame: Frame) -> bool:
        """
        Hold C{frame} while history is pending, else write it unless its
        offset was already written.
        """
        if self._held is not None:
            self._held.append(frame)
            return True
        return self._write(frame)

    def _write(self, frame: Frame) -> bool:
        offset = frame.offset
        if offset is not None:
            epoch = frame.epoch
            if epoch is not None and epoch != self.epoch:
                if self.epoch is not None:
                    self.lastOffset = 0
                self.epoch = epoch
            if offset <= self.lastOffset:
                return False
            self.lastOffset = offset
        return self.session.sendPrepared(frame)

    def release(self, position: int, history: Iterable[Frame] = (), epoch: str | None = None) -> None:
        """
        Go live: the subscriber has everything up to offset C{position} (of
        C{epoch}, if known); write C{history} (the messages after it), then
        what was held.
        """
        held, self._held = self._held or [], None
        self.lastOffset = position
        self.epoch = epoch
        for frame in history:
            self._write(frame)
        for frame in held:
            self._write(frame)
