"""
A node's whole share of presence written to Redis a step at a time.

A rewrite (the periodic refresh, the repair after Redis lost data or the
node's subscriptions) and a clean stop touch every uid and channel member
the node holds.  Queued as one pipeline operation, 100,000 sessions were
200,000 commands queued in one reactor turn (redis-py's command methods
cost some microseconds each: a second and more without a push read or
answered) and one pipeline that held Redis as long.  Here a step carries
at most L{STEP} arguments, and the next one is made only once Redis has
answered the one before, so pushes, heartbeats and other nodes' commands
pass between the steps.  (A step takes commands until they reach L{STEP}
arguments, so its last command may carry it past by one command's worth.)

What a step writes is read from the node's state when the step is made,
not when the rewrite began.  Every change made before that (a session
counted, a member gone) is already in the state and its own command is
ahead in the pipeline; every change after it follows it.  So a count is
never added twice, and a uid or member that left is not written back.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Iterator, Mapping

from twisted.internet.defer import Deferred, ensureDeferred

from realtime.redisio import Pipeliner

__all__ = ["STEP", "Command", "counts", "members", "removedCounts", "removedMembers", "inSteps"]

#: the arguments a step's commands reach before it is sent: 200 uids'
#: counts (with their expiries), or about 500 members of a channel
STEP = 1000

#: one Redis command: its name, then its arguments
Command = tuple[Any, ...]

#: the most fields one C{HSET} or C{HDEL} of a channel's members names
_FIELDS = 250


def counts(keys: Any, node: str, expiry: int, held: dict[str, int]) -> Iterator[Command]:
    """
    This node's count of each uid in C{held} (the node's live table of uids
    and their sessions), with a fresh expiry.
    """
    for uid in list(held):
        count = held.get(uid)
        if count:
            key = keys.connections(uid)
            yield ("HSET", key, node, count)
            yield ("EXPIRE", key, expiry)


def members(keys: Any, expiry: int, held: dict[str, dict[str, str]]) -> Iterator[Command]:
    """
    The members of each channel in C{held} (channel: {field: uid}, the
    node's live table), with a fresh expiry.
    """
    for channel in list(held):
        fields = list(held.get(channel, ()))
        for start in range(0, len(fields), _FIELDS):
            current = held.get(channel)
            if not current:
                break
            pairs = [
                x for field in fields[start : start + _FIELDS] if field in current for x in (field, current[field])
            ]
            if pairs:
                key = keys.members(channel)
                yield ("HSET", key, *pairs)
                yield ("EXPIRE", key, expiry)


def removedCounts(keys: Any, node: str, uids: Iterable[str], held: dict[str, int] | None = None) -> Iterator[Command]:
    """
    This node's field removed from each of C{uids}' counts, but from those
    it holds again meanwhile (in C{held}).
    """
    for uid in uids:
        if held is None or uid not in held:
            yield ("HDEL", keys.connections(uid), node)


def removedMembers(
    keys: Any, fields: Mapping[str, Iterable[str]], held: dict[str, dict[str, str]] | None = None
) -> Iterator[Command]:
    """
    The member C{fields} (channel: fields) removed, but those the node holds
    again meanwhile (in C{held}).
    """
    for channel, names in fields.items():
        names = list(names)
        for start in range(0, len(names), _FIELDS):
            current = {} if held is None else held.get(channel, {})
            gone = [field for field in names[start : start + _FIELDS] if field not in current]
            if gone:
                yield ("HDEL", keys.members(channel), *gone)


def _queue(step: list[Command], pipe: Any) -> int:
    for command in step:
        pipe.execute_command(*command)
    return len(step)


def _answered(answers: list[Any]) -> None:
    """What a step answers: nothing (a reply error fails the step)."""


def _take(commands: Iterator[Command]) -> list[Command]:
    """
    The next step: commands up to L{STEP} arguments (at least one).
    """
    step, size = [], 0
    for command in commands:
        step.append(command)
        size += len(command) - 1
        if size >= STEP:
            break
    return step


def inSteps(pipeliner: Pipeliner, commands: Iterable[Command]) -> Deferred[None]:
    """
    Send C{commands} a step at a time, each step made once the one before
    it is answered; fails with the first step that fails, sending no more.
    """
    stream = iter(commands)

    async def run() -> None:
        while step := _take(stream):
            await pipeliner.submit(partial(_queue, step), _answered)

    return ensureDeferred(run())
