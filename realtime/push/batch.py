"""
Outcomes of a batch of pushes: one per push, in order, each a
C{PushResult} or the L{Failure} that push alone met.

A batch exists to pay for one Deferred where the pushes of one read of the
line port would each pay for theirs (three callbacks a push, a fifth of a
Redis node's CPU at full rate).  A failure inside the list is a value, not
an errback: one push refused must not fail the others, and the caller words
each one (the line port answers an C{error:} line in its place).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from realtime.values import Envelope, PushResult

__all__ = ["Outcome", "gathered", "oneByOne"]

#: what one push of a batch came to
Outcome = PushResult | Failure


class _Waiting:
    """
    The outcomes of a batch whose later parts are Deferreds, filled in as
    they fire; C{done} fires once the last has.
    """

    def __init__(self, outcomes: list[Any], later: list[int]) -> None:
        self._outcomes = outcomes
        self._remaining = len(later)
        self.done: Deferred[list[Outcome]] = Deferred()
        for i in later:
            outcomes[i].addBoth(self._settled, i)

    def _settled(self, outcome: Any, i: int) -> None:
        # a Failure is kept as the value: consumed here, not logged as unhandled
        self._outcomes[i] = outcome
        self._remaining -= 1
        if self._remaining == 0:
            self.done.callback(self._outcomes)


def gathered(outcomes: list[Any]) -> Deferred[list[Outcome]]:
    """
    C{outcomes} (results, failures or Deferreds of either) once none is a
    Deferred any more; the list is filled in place.
    """
    later = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Deferred)]
    if not later:
        return succeed(outcomes)
    return _Waiting(outcomes, later).done


def oneByOne(
    publish: Callable[[Envelope], PushResult | Deferred[PushResult]], envelopes: Sequence[Envelope]
) -> Deferred[list[Outcome]]:
    """
    A batch published one envelope at a time through C{publish}, in order:
    what a publisher without a batch path of its own answers.
    """
    outcomes: list[Any] = []
    for envelope in envelopes:
        try:
            outcomes.append(publish(envelope))
        except Exception:
            outcomes.append(Failure())
    return gathered(outcomes)
