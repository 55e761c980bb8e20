"""
``realtime-push subscribe``: a L{ChannelSubscriber} that prints what it
receives, for a shell or a script.

Kept out of L{realtime.client.cli}, which stays standard library only, and
out of L{realtime.client.subscriber}, which a worker imports without wanting
a command's reactor handling.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from typing import Sequence, TextIO

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from realtime.client.subscriber import CLIENT_CODES, ChannelMessage, ChannelSubscriber, Result, SubscriberError
from realtime.values import Position

#: seconds SIGINT/SIGTERM wait for a clean close (1000) before the reactor drops the connection
STOP_TIMEOUT = 3.0


def follow(url: str, channels: Sequence[str], since: str | None, first: str | None, out: TextIO, err: TextIO) -> int:
    """
    ``realtime-push subscribe``: print each message as one JSON line on C{out} until
    interrupted (exit 0) or a subscription is refused (exit 2); C{since} is C{"EPOCH:OFFSET"}.

    C{realtime-push: ready} on C{err} says every channel is subscribed, so a script (or a test)
    waits for that line, not for a time.  SIGINT or SIGTERM stops at once, connected or not: the
    close handshake gets L{STOP_TIMEOUT} seconds, then the connection is dropped.
    """
    from twisted.internet import reactor

    positions = None
    if since is not None:
        epoch, _, offset = since.rpartition(":")
        if not epoch or not offset.isdigit() or len(channels) != 1:
            raise ValueError(f"--since wants EPOCH:OFFSET and one CHANNEL, not {since!r}")
        positions = {channels[0]: Position(epoch, int(offset))}
    subscriber = ChannelSubscriber(url, reactor, firstMessage=first, positions=positions)
    say, status = partial(print, "realtime-push:", file=err, flush=True), [0]

    def printMessage(m: ChannelMessage) -> None:
        print(json.dumps(asdict(m), ensure_ascii=False), file=out, flush=True)

    def refused(failure: Failure) -> bool:
        say("error:", failure.getErrorMessage())
        if not (isinstance(failure.value, SubscriberError) and failure.value.code in CLIENT_CODES) and not status[0]:
            status[0] = 2
            reactor.stop()
        return False

    def subscribed(r: Result) -> bool:
        say("subscribed", r.get("channel"), f"at {r.get('epoch')}:{r.get('offset')}")
        return True

    def stop() -> Deferred[None]:
        return subscriber.stop().addTimeout(STOP_TIMEOUT, reactor).addErrback(lambda _: None)

    subscriber.onStatus = say
    replies = [
        subscriber.subscribe(c, printMessage, lambda r: say("lost messages:", json.dumps(r)))
        .addCallbacks(subscribed, refused)
        for c in channels
    ]
    gatherResults(replies).addCallback(lambda ok: all(ok) and say("ready"))
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.callWhenRunning(subscriber.start)
    reactor.run()
    return status[0]
