"""
Channel messages this node missed on pub/sub, noticed and delivered from the
history instead of trusted away.

Redis pub/sub is at most once: a message published while this node's
pub/sub connection is being replaced, or in the moment between a first
subscription and Redis applying the C{SUBSCRIBE}, never arrives.  The
store's publish script gives a channel's messages consecutive offsets and
publishes them in offset order, so for every locally subscribed channel
with history this node remembers the last position (epoch, offset) it saw:

  - a message whose offset jumps past the next one, in the same epoch, is a
    gap: the node reads the history since its position, delivers the missing
    messages in order, then the live messages it held back meanwhile (the
    subscriptions drop offsets they already wrote,
    L{realtime.core.subscription}, so overlaps are harmless);
  - a message of another epoch (the history was lost and started again)
    restarts the position at offset 0 of that epoch;
  - a lost I{last} message has no later message to reveal it, so every
    C{interval} one pipeline reads the top of every tracked channel's
    stream, and a channel whose top stayed beyond the position for two
    checks in a row (one would also catch messages still on their way) is
    recovered the same way.

The position starts as the stream's top read when the node's first
subscription to the channel is made, before that subscription reads its
history (both go through the store's one pipeline, in order), so whatever
the subscription's history does not hold comes after it.

Bounded: a recovery reads what the stream keeps after the position (at most
the retention's count), at most C{maxHeld} live messages wait per channel
(more are dropped and read from the history by a second recovery, since
the stream holds them too), a failed read is logged and retried by the next
check, and nothing waits in the reactor.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from realtime.values import History, Position

__all__ = ["ChannelGaps"]

#: the position of a channel whose stream had no meta: its first epoch is
#: another, so its first message restarts the position at 0
_NOTHING = Position("", 0)

#: channels whose tops one pipeline of the periodic check reads
_CHECK_BATCH = 1000

Deliver = Callable[[str, int, str, bytes], None]


class _Track:
    """
    One channel's position, and the live messages waiting for a read.

    @ivar position: the last (epoch, offset) delivered, C{None} when it is
        unknown (reading it failed: the next message is trusted).
    @ivar busy: the starting position or a recovery is being read.
    @ivar retry: the last recovery failed; the next check tries again.
    @ivar suspect: the top the last check saw beyond the position.
    """

    __slots__ = ("position", "held", "busy", "retry", "overflowed", "suspect")

    def __init__(self) -> None:
        self.position: Position | None = None
        self.held: list[tuple[int, str, bytes]] = []
        self.busy = True
        self.retry = False
        self.overflowed = False
        self.suspect: int | None = None


class ChannelGaps:
    """
    Delivers each tracked channel's messages in offset order, the missed
    ones read from C{store}.

    @param store: what keeps the history: C{history(stream, since, now)}
        and C{positions(streams)} (L{realtime.store.redis.RedisMessageStore}).
    @param deliver: called with C{(channel, offset, epoch, data)} for each
        message to hand to the local subscribers, in order.
    """

    log = Logger()

    def __init__(
        self, reactor: Any, store: Any, deliver: Deliver, *, interval: float = 2.0, maxHeld: int = 1000
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._deliver = deliver
        self._tracks: dict[str, _Track] = {}
        self._checker = LoopingCall(self.check)
        self._checker.clock = reactor
        self._interval = interval
        self.maxHeld = maxHeld
        #: messages delivered from the history because pub/sub lost them
        self.recovered = 0

    def start(self) -> None:
        self._checker.start(self._interval, now=False).addErrback(lambda f: self.log.failure("the gap check", f))

    def stop(self) -> None:
        if self._checker.running:
            self._checker.stop()

    def tracking(self, channel: str) -> bool:
        return channel in self._tracks

    def settled(self, channel: str) -> bool:
        """
        Whether C{channel} is followed and nothing of it is being read.
        """
        track = self._tracks.get(channel)
        return track is not None and not track.busy

    def track(self, channel: str) -> None:
        """
        Start following C{channel} (its first local subscription): read
        where its stream is, holding live messages back until then.
        """
        if channel in self._tracks:
            return
        track = self._tracks[channel] = _Track()

        def started(positions: dict[str, Position | None]) -> None:
            if self._tracks.get(channel) is track:
                track.position = positions.get(channel) or _NOTHING
                self._release(channel, track)

        def failed(reason: Any) -> None:
            self.log.warn("reading where {channel} is failed: {why}", channel=channel, why=reason.getErrorMessage())
            if self._tracks.get(channel) is track:
                self._release(channel, track)

        self._store.positions([channel]).addCallbacks(started, failed)

    def untrack(self, channel: str) -> None:
        """
        Stop following C{channel} (its last local subscription went).
        """
        self._tracks.pop(channel, None)

    def received(self, channel: str, offset: int, epoch: str, data: bytes) -> None:
        """
        A message of C{channel} came from pub/sub: deliver it, or hold it
        while the messages before it are read.
        """
        track = self._tracks.get(channel)
        if track is None:
            self._deliver(channel, offset, epoch, data)
        elif track.busy or track.retry:
            self._hold(track, offset, epoch, data)
        else:
            self._take(channel, track, offset, epoch, data)

    def _take(self, channel: str, track: _Track, offset: int, epoch: str, data: bytes) -> None:
        position = track.position
        if position is None:
            track.position = Position(epoch, offset)
            self._deliver(channel, offset, epoch, data)
            return
        if epoch != position.epoch:
            position = Position(epoch, 0)
        if offset <= position.offset:
            # delivered already, live or from the history
            track.position = position
            return
        if offset == position.offset + 1:
            track.position = Position(epoch, offset)
            self._deliver(channel, offset, epoch, data)
            return
        track.position = position
        self._hold(track, offset, epoch, data)
        self._recover(channel, track)

    def _hold(self, track: _Track, offset: int, epoch: str, data: bytes) -> None:
        if len(track.held) < self.maxHeld:
            track.held.append((offset, epoch, data))
        else:
            # the stream has it too: read again once this read is written
            track.overflowed = True

    def _recover(self, channel: str, track: _Track) -> None:
        since = track.position
        assert since is not None
        track.busy, track.retry, track.overflowed, track.suspect = True, False, False, None
        self._store.history(channel, since, self._reactor.seconds()).addCallbacks(
            self._recovered, self._failed, callbackArgs=(channel, track, since), errbackArgs=(channel, track)
        ).addErrback(lambda f: self.log.failure("recovering {channel}", f, channel=channel))

    def _recovered(self, history: History, channel: str, track: _Track, since: Position) -> None:
        if self._tracks.get(channel) is not track:
            return
        position = since if history.epoch == since.epoch else Position(history.epoch, 0)
        if not history.recovered and history.epoch == since.epoch:
            self.log.warn(
                "{channel}: messages after offset {offset} are no longer kept; delivering what is",
                channel=channel,
                offset=since.offset,
            )
        # counted as recovered: what pub/sub lost, not what it still brings
        # (the held messages, and any after them)
        held = {offset for offset, epoch, _ in track.held if epoch == history.epoch}
        limit = max(held, default=history.offset)
        if history.messages and history.messages[0].offset > position.offset + 1:
            # the history no longer keeps what follows the position: what
            # is held from before its first message still goes first
            position = self._deliverHeldBefore(channel, track, position, history.messages[0].offset)
        for message in history.messages:
            if message.offset > position.offset:
                if message.offset <= limit and message.offset not in held:
                    self.recovered += 1
                position = Position(history.epoch, message.offset)
                self._deliver(channel, message.offset, history.epoch, message.payload)
        track.position = position
        overflowed = track.overflowed
        self._release(channel, track)
        if overflowed and not track.busy:
            self._recover(channel, track)

    def _deliverHeldBefore(self, channel: str, track: _Track, position: Position, first: int) -> Position:
        for offset, epoch, data in track.held:
            if epoch == position.epoch and position.offset < offset < first:
                position = Position(epoch, offset)
                self._deliver(channel, offset, epoch, data)
        return position

    def _failed(self, reason: Any, channel: str, track: _Track) -> None:
        self.log.warn(
            "recovering {channel} from its history failed: {why}", channel=channel, why=reason.getErrorMessage()
        )
        track.busy, track.retry = False, True

    def _release(self, channel: str, track: _Track) -> None:
        """
        The read is written: take the held messages in order (one of them
        may reveal another gap, and the rest wait again).
        """
        track.busy = False
        held, track.held = track.held, []
        for offset, epoch, data in held:
            if track.busy:
                self._hold(track, offset, epoch, data)
            else:
                self._take(channel, track, offset, epoch, data)

    # the periodic check

    def check(self) -> None:
        """
        Read the top of every tracked channel's stream; recover the channels
        that stayed behind it since the last check, and retry the failed.
        """
        channels = list(self._tracks)
        for i in range(0, len(channels), _CHECK_BATCH):
            self._store.positions(channels[i : i + _CHECK_BATCH]).addCallback(self._checked).addErrback(
                lambda f: self.log.warn("the gap check failed: {why}", why=f.getErrorMessage())
            )

    def _checked(self, tops: dict[str, Position | None]) -> None:
        for channel, top in tops.items():
            track = self._tracks.get(channel)
            if track is None or track.busy:
                continue
            if track.retry:
                self._recover(channel, track)
                continue
            position = track.position
            if top is None or position is None:
                continue
            if top.epoch != position.epoch:
                position = track.position = Position(top.epoch, 0)
            if top.offset <= position.offset:
                track.suspect = None
            elif track.suspect is not None and track.suspect > position.offset:
                self._recover(channel, track)
            else:
                track.suspect = top.offset
