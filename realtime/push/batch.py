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

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.python.failure import Failure

from realtime.values import Envelope, PushResult

__all__ = ["Outcome", "gathered", "oneByOne"]

#: what one push of a batch came to
Outcome = PushResult | Failure


def gathered(outcomes: list[Any]) -> Deferred[list[Outcome]]:
    """
    C{outcomes} (results, failures or Deferreds of either) once none is a
    Deferred any more; the list is filled in place, a failure kept as the
    value in its place (consumed: not logged as unhandled).
    """
    later = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Deferred)]
    if not later:
        return succeed(outcomes)

    def fill(results: list[tuple[bool, Any]]) -> list[Outcome]:
        for i, (_, value) in zip(later, results, strict=True):
            outcomes[i] = value
        return outcomes

    return DeferredList([outcomes[i] for i in later], consumeErrors=True).addCallback(fill)


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
