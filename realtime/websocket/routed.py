"""
A session's routing answers, carried out in the order its messages came.

A routing strategy answers each message with actions or with a Deferred of
them (C{IRoutingStrategy.route}).  A slow answer must not let a later
message's actions overtake it: a chat line relayed after the reply to the
request sent before it, a reply to C{unsubscribe} before the one to its
C{subscribe}.  So answers wait here, in message order, and leave as soon as
every answer before them is in.  The strategy is still asked about each
message when it arrives, so the work for several messages overlaps (a client
resubscribing to its 100 channels after a reconnect waits for one history
read, not for 100 in turn); only what reaches the wire is ordered.

Bounded: at most L{MAX_PENDING} answers wait per session, which covers a
resubscription to every channel a session may hold (512) twice over; a
client past it is sending faster than its answers can be had, and is closed
with 1008.  Pure bookkeeping, no Autobahn: the protocol hands in how to
carry out actions and how to fail.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from realtime.values import Deliver

#: answers one session may have waiting (pending Deferreds, and the answers
#: queued behind them)
MAX_PENDING = 1024

_WAITING, _READY, _FAILED = 0, 1, 2


def answerNow(answer: Deferred[Any]) -> Any:
    """
    What C{answer} fired with, if it has (a C{Failure} if it failed, taken
    from it), or else C{answer} itself, to fire as it would have.

    Most Deferred answers have fired by the time they are returned (the
    channel service answers a ping, or a subscribe to a memory store, at
    once): with nothing waiting ahead, those are carried out without
    making a queue.
    """
    box: list[Any] = []
    answer.addBoth(box.append)
    if box:
        return box[0]
    return answer.addCallback(lambda _: box[0])


class RouteQueue:
    """
    The answers of one session's messages not carried out yet, oldest first.

    @ivar perform: carries out a sequence of actions for the session.
    @ivar fail: told of a failed answer (logs it; closes the session if open).
    @ivar isOpen: whether the session can still be written to; when it
        cannot, only C{Deliver}s (to other sessions) are carried out.
    @ivar drained: called when the last waiting answer has been carried
        out, so the owner can let go of an empty queue.
    """

    __slots__ = ("perform", "fail", "isOpen", "drained", "_slots", "_flushing")

    def __init__(
        self,
        perform: Callable[[Iterable[object]], None],
        fail: Callable[[Failure], None],
        isOpen: Callable[[], bool],
        drained: Callable[[], None] = lambda: None,
    ) -> None:
        self.perform = perform
        self.fail = fail
        self.isOpen = isOpen
        self.drained = drained
        # [state, actions or failure]; few at a time, so a list
        self._slots: list[list[Any]] = []
        self._flushing = False

    @property
    def idle(self) -> bool:
        """
        Whether nothing waits.
        """
        return not self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, answer: Iterable[object] | Deferred[Iterable[object]]) -> bool:
        """
        Queue the answer to the next message, and carry out whatever is
        ready in order.

        @return: C{False} if L{MAX_PENDING} answers already wait: the answer
            is then not queued (a failure of it is still logged), and the
            caller closes the session.
        """
        if len(self._slots) >= MAX_PENDING:
            if isinstance(answer, Deferred):
                answer.addErrback(self.fail)
            return False
        if isinstance(answer, Deferred):
            slot: list[Any] = [_WAITING, None]
            self._slots.append(slot)
            # flushes when it fires (now, if it has)
            answer.addCallbacks(self._answered, self._failed, callbackArgs=(slot,), errbackArgs=(slot,))
        else:
            # taken now: a generator must not see the strategy's later state
            self._slots.append([_READY, tuple(answer)])
            self._flush()
        return True

    def _answered(self, actions: Iterable[object], slot: list[Any]) -> None:
        try:
            slot[1] = tuple(actions)
            slot[0] = _READY
        except Exception:
            slot[0], slot[1] = _FAILED, Failure()
        self._flush()

    def _failed(self, failure: Failure, slot: list[Any]) -> None:
        slot[0], slot[1] = _FAILED, failure
        self._flush()

    def _flush(self) -> None:
        if self._flushing:
            # an answer that fired while an earlier one was being carried
            # out: the loop below takes it
            return
        self._flushing = True
        try:
            slots = self._slots
            while slots and slots[0][0] != _WAITING:
                state, value = slots.pop(0)
                if state == _FAILED:
                    self.fail(value)
                    continue
                if not self.isOpen():
                    value = tuple(a for a in value if isinstance(a, Deliver))
                try:
                    self.perform(value)
                except Exception:
                    self.fail(Failure())
        finally:
            self._flushing = False
        if not self._slots:
            self.drained()
