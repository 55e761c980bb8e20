"""
Tests for L{realtime.client.subscriber}: the logic with a L{Clock} and frames as
bytes (no sockets), then against a real server subprocess with the real
reactor, across a restart, and the ``realtime-push subscribe`` command.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import subprocess
import sys
from itertools import pairwise
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from realtime.client.cli import main
from realtime.client.subscriber import (
    ChannelMessage,
    ChannelSubscriber,
    SubscriberError,
    SubscriberService,
    backoffDelay,
)
from realtime.values import Position
from tests.serverprocess import OutputLines, ServerProcess, environment, publish

CHANNELS = ("--auth", "anonymous", "--routing", "channels", "--namespace", "news:*:public=true:history=1000:ttl=3600")
CHAT = ("--namespace", "chat:*:public=true:publish=true:presence=true:history=100:ttl=600")


class RecordingEndpoint:
    """
    A client endpoint that records when each attempt came, and refuses it
    unless it wraps a real endpoint.
    """

    def __init__(self, clock: Any, wrapped: Any = None) -> None:
        self.clock = clock
        self.wrapped = wrapped
        self.attempts: list[float] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        for n, d in [w for w in self._waiting if len(self.attempts) >= w[0]]:
            self._waiting.remove((n, d))
            # in a later turn: we are inside ClientService, which must not be stopped from here
            self.clock.callLater(0, d.callback, None)
        return fail(ConnectionRefusedError()) if self.wrapped is None else self.wrapped.connect(factory)

    def waitFor(self, n: int) -> Deferred[None]:
        """
        Fire once C{n} attempts were made.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append((n, d))
        return d


class Wire:
    """
    The protocol's side of a L{ChannelSubscriber}: what it sent, decoded.
    """

    def __init__(self, subscriber: ChannelSubscriber) -> None:
        self.subscriber = subscriber
        self.sent: list[Any] = []
        self.closed = 0

    def open(self) -> Wire:
        """
        Tell the subscriber its WebSocket opened.
        """
        self.subscriber.connectionOpened(lambda b: self.sent.append(json.loads(b)), self.close)
        return self

    def close(self) -> None:
        """
        What the protocol does on L{ChannelSubscriber.stop}: count it.
        """
        self.closed += 1

    def receive(self, **frame: Any) -> None:
        """
        Deliver one frame from the server.
        """
        self.subscriber.messageReceived(json.dumps(frame).encode("utf-8"), False)

    def reply(self, result: dict[str, Any] | None = None, error: tuple[str, str] | None = None) -> None:
        """
        Answer the last request sent.
        """
        if error is None:
            self.receive(type="reply", id=self.sent[-1]["id"], ok=True, result=result or {})
        else:
            self.receive(type="reply", id=self.sent[-1]["id"], ok=False, error={"code": error[0], "message": error[1]})

    def message(self, offset: int, epoch: str = "E1") -> None:
        """
        Deliver a message of C{news:a}.
        """
        self.receive(type="message", channel="news:a", offset=offset, epoch=epoch, data={"n": offset})


class LogicTests(SynchronousTestCase):
    """
    Positions, duplicates, request ids and timeouts, without a socket.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.got: list[ChannelMessage] = []
        self.lost: list[dict[str, Any]] = []

    def subscriber(self, **kwargs: Any) -> ChannelSubscriber:
        """
        A subscriber on C{self.clock}, never connected.
        """
        return ChannelSubscriber("ws://127.0.0.1:1/ws", self.clock, endpoint=RecordingEndpoint(self.clock), **kwargs)

    def subscribed(self, positions: dict[str, Position] | None = None) -> tuple[ChannelSubscriber, Wire]:
        """
        A subscriber of C{news:a}, connected, its subscribe request unanswered.
        """
        subscriber = self.subscriber(positions=positions)
        wire = Wire(subscriber).open()
        self.request = subscriber.subscribe("news:a", self.got.append, self.lost.append)
        return subscriber, wire

    def test_subscribe(self) -> None:
        """
        A subscribe request without C{since} for a new channel; its reply
        fires the Deferred and gives the starting position.
        """
        subscriber, wire = self.subscribed()
        self.assertEqual(wire.sent, [{"id": 1, "op": "subscribe", "channel": "news:a"}])
        wire.reply({"channel": "news:a", "epoch": "E1", "offset": 4})
        self.assertEqual(self.successResultOf(self.request)["offset"], 4)
        self.assertEqual(subscriber.positions, {"news:a": Position("E1", 4)})
        self.assertEqual((self.lost, self.clock.getDelayedCalls()), ([], []))

    def test_subscribeBeforeConnecting(self) -> None:
        """
        Subscribing offline sends nothing; the first connection subscribes
        (after the first message) and its reply fires the Deferred.
        """
        subscriber = self.subscriber(firstMessage="uid1")
        d = subscriber.subscribe("news:a", self.got.append)
        sent: list[bytes] = []
        subscriber.connectionOpened(sent.append, lambda: None)
        self.assertEqual(sent[0], b"uid1")
        self.assertNoResult(d)
        subscriber.messageReceived(b'{"type":"reply","id":1,"ok":true,"result":{"channel":"news:a"}}', False)
        self.assertEqual(self.successResultOf(d), {"channel": "news:a"})

    def test_duplicatesDropped(self) -> None:
        """
        A message at or before the position, in its epoch, is not delivered
        again; a message of a new epoch is (the old history is gone).
        """
        subscriber, wire = self.subscribed()
        for offset in (1, 2, 2, 1, 3):
            wire.message(offset)
        wire.message(1, epoch="E2")
        self.assertEqual([(m.epoch, m.offset) for m in self.got], [("E1", 1), ("E1", 2), ("E1", 3), ("E2", 1)])
        self.assertEqual(self.got[0], ChannelMessage("news:a", {"n": 1}, "E1", 1))
        self.assertEqual(subscriber.positions["news:a"], Position("E2", 1))

    def test_replyNeverMovesBack(self) -> None:
        """
        Messages released before the subscribe reply may be past the reply's
        offset: the position stays at the last message.
        """
        subscriber, wire = self.subscribed({"news:a": Position("E1", 5)})
        self.assertEqual(wire.sent[0]["since"], {"epoch": "E1", "offset": 5})
        for offset in (6, 7, 8):
            wire.message(offset)
        wire.reply({"channel": "news:a", "epoch": "E1", "offset": 7, "recovered": True, "missed": 2})
        self.assertEqual(subscriber.positions["news:a"], Position("E1", 8))
        self.assertEqual(len(self.got), 3)

    def test_resubscribeFromPosition(self) -> None:
        """
        A dropped connection fails the pending requests; the next one
        resubscribes from the last position, and a duplicate released at
        the seam is dropped.
        """
        subscriber, wire = self.subscribed()
        wire.reply({"channel": "news:a", "epoch": "E1", "offset": 0})
        wire.message(1)
        wire.message(2)
        ping = subscriber.ping()
        subscriber.connectionClosed("gone")
        self.assertEqual(self.failureResultOf(ping, SubscriberError).value.code, "connection_lost")
        self.assertFalse(subscriber.connected)
        again = Wire(subscriber).open()
        self.assertEqual(again.sent[0]["since"], {"epoch": "E1", "offset": 2})
        self.assertGreater(again.sent[0]["id"], wire.sent[-1]["id"])
        for offset in (2, 3):
            again.message(offset)
        again.reply({"channel": "news:a", "epoch": "E1", "offset": 3, "recovered": True, "missed": 1})
        self.assertEqual([m.offset for m in self.got], [1, 2, 3])
        self.assertEqual(self.lost, [])

    def test_onLost(self) -> None:
        """
        A resume reply with C{"recovered": false} is passed to onLost, after
        the position moved to where the server is.
        """
        subscriber, wire = self.subscribed({"news:a": Position("E0", 90)})
        reply = {"channel": "news:a", "epoch": "E1", "offset": 12, "recovered": False}
        wire.reply(reply)
        self.assertEqual(self.lost, [reply])
        self.assertEqual(subscriber.positions["news:a"], Position("E1", 12))

    def test_errors(self) -> None:
        """
        An error reply fails the request with its code and message; a
        refused subscription is forgotten, so it is not retried.
        """
        subscriber, wire = self.subscribed()
        wire.reply(error=("forbidden", "not allowed to subscribe to 'news:a'"))
        error = self.failureResultOf(self.request, SubscriberError).value
        self.assertEqual((error.code, error.message), ("forbidden", "not allowed to subscribe to 'news:a'"))
        published = subscriber.publish("news:a", {"x": 1})
        self.assertEqual(wire.sent[-1], {"id": 2, "op": "publish", "channel": "news:a", "data": {"x": 1}})
        wire.reply(error=("forbidden", "no"))
        self.failureResultOf(published, SubscriberError)
        subscriber.connectionClosed("gone")
        self.assertEqual(Wire(subscriber).open().sent, [])
        self.assertEqual(self.failureResultOf(subscriber.unsubscribe("news:a")).value.code, "not_subscribed")

    def test_timeoutAndCancel(self) -> None:
        """
        A request without a reply fails after C{requestTimeout}; a late reply
        is ignored; a cancelled request leaves no timer behind.
        """
        subscriber = self.subscriber(requestTimeout=3)
        wire = Wire(subscriber).open()
        ping = subscriber.ping()
        self.clock.advance(2.9)
        self.assertNoResult(ping)
        self.clock.advance(0.1)
        self.assertEqual(self.failureResultOf(ping, SubscriberError).value.code, "timeout")
        wire.reply({})
        presence = subscriber.presence("chat:x")
        presence.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(presence, CancelledError)
        wire.reply({"uids": {}})

    def test_offline(self) -> None:
        """
        Requests other than subscribe fail at once without a connection;
        subscribing twice is an error.
        """
        subscriber = self.subscriber()
        self.assertEqual(self.failureResultOf(subscriber.ping(), SubscriberError).value.code, "not_connected")
        subscriber.subscribe("news:a", self.got.append)
        again = subscriber.subscribe("news:a", self.got.append)
        self.assertEqual(self.failureResultOf(again, SubscriberError).value.code, "already_subscribed")

    def test_unsubscribe(self) -> None:
        """
        Unsubscribing forgets the channel and its position: a late reply or
        message changes nothing.
        """
        subscriber, wire = self.subscribed()
        wire.message(1)
        d = subscriber.unsubscribe("news:a")
        self.assertEqual(wire.sent[-1], {"id": 2, "op": "unsubscribe", "channel": "news:a"})
        wire.reply({"channel": "news:a"})
        self.assertEqual(self.successResultOf(d), {"channel": "news:a"})
        wire.receive(type="reply", id=1, ok=True, result={"channel": "news:a", "epoch": "E1", "offset": 0})
        wire.message(2)
        self.assertEqual((subscriber.positions, len(self.got)), ({}, 1))

    def test_unsubscribeOffline(self) -> None:
        """
        Unsubscribing before any connection cancels the subscribe Deferred,
        and the next connection subscribes to nothing.
        """
        subscriber = self.subscriber()
        d = subscriber.subscribe("news:a", self.got.append)
        self.assertIsNone(self.successResultOf(subscriber.unsubscribe("news:a")))
        self.failureResultOf(d, CancelledError)
        self.assertEqual(Wire(subscriber).open().sent, [])

    def test_stopClosesFirst(self) -> None:
        """
        L{ChannelSubscriber.stop} closes the WebSocket and fires only once
        the connection is gone, so no close handshake is cut short.
        """
        subscriber, wire = self.subscribed()
        stopped = subscriber.stop()
        self.assertEqual(wire.closed, 1)
        self.assertNoResult(stopped)
        subscriber.connectionClosed("closed cleanly")
        self.successResultOf(stopped)
        self.assertEqual(self.failureResultOf(self.request, SubscriberError).value.code, "connection_lost")

    def test_pushesAndEvents(self) -> None:
        """
        Backend pushes, foreign text and binary frames go to onPush; join
        and leave to onEvent.
        """
        subscriber, wire = self.subscribed()
        pushes: list[Any] = []
        events: list[Any] = []
        subscriber.onPush, subscriber.onEvent = pushes.append, events.append
        wire.receive(type="push", data="hello")
        subscriber.messageReceived(b"not json", False)
        subscriber.messageReceived(b"\x00\x01", True)
        wire.receive(type="join", channel="chat:x", uid="alice")
        self.assertEqual(pushes, ["hello", "not json", b"\x00\x01"])
        self.assertEqual(events, [{"type": "join", "channel": "chat:x", "uid": "alice"}])

    def test_raisingCallbackLogged(self) -> None:
        """
        A callback that raises is logged, and later messages still arrive.
        """
        subscriber = self.subscriber()
        seen: list[int] = []

        def onMessage(m: ChannelMessage) -> None:
            seen.append(m.offset or 0)
            raise ValueError("bug")

        subscriber.subscribe("news:a", onMessage)
        wire = Wire(subscriber).open()
        wire.message(1)
        wire.message(2)
        self.assertEqual(seen, [1, 2])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)


class BackoffTests(SynchronousTestCase):
    """
    Reconnect delays: exponential, capped, jittered, reset by an open WebSocket.
    """

    def test_delay(self) -> None:
        """
        Between half and all of C{min(maxDelay, minDelay * 2**attempt)}.
        """
        self.assertEqual([backoffDelay(n, 0.5, 3.0, lambda: 1.0) for n in range(5)], [0.5, 1.0, 2.0, 3.0, 3.0])
        self.assertEqual([backoffDelay(n, 0.5, 3.0, lambda: 0.0) for n in range(4)], [0.25, 0.5, 1.0, 1.5])
        self.assertEqual(backoffDelay(10**6, 0.5, 30.0, lambda: 1.0), 30.0)

    def test_schedule(self) -> None:
        """
        Refused attempts come at growing intervals; an open WebSocket starts
        over from C{minDelay}; L{SubscriberService.stopService} ends it all.
        """
        clock = Clock()
        endpoint = RecordingEndpoint(clock)
        subscriber = ChannelSubscriber(
            "ws://127.0.0.1:1/ws", clock, endpoint=endpoint, minDelay=1, maxDelay=8, jitter=lambda: 1.0
        )
        service = SubscriberService(subscriber)
        service.startService()
        clock.pump([0.5] * 60)
        self.assertEqual(endpoint.attempts, [0, 1, 3, 7, 15, 23])
        Wire(subscriber).open()
        subscriber.connectionClosed("gone")
        clock.pump([1, 1])
        self.assertEqual(endpoint.attempts[-2:], [31, 32])
        self.successResultOf(service.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])


class Inbox:
    """
    Collects a subscriber's messages; L{waitFor} fires once there are enough.
    """

    def __init__(self) -> None:
        self.messages: list[ChannelMessage] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, message: ChannelMessage) -> None:
        self.messages.append(message)
        for n, d in [w for w in self._waiting if len(self.messages) >= w[0]]:
            self._waiting.remove((n, d))
            d.callback(None)

    def waitFor(self, n: int, timeout: float = 30.0) -> Deferred[None]:
        """
        Fire once C{n} messages arrived.
        """
        d: Deferred[None] = Deferred()
        if len(self.messages) >= n:
            d.callback(None)
        else:
            self._waiting.append((n, d))
        return d.addTimeout(timeout, reactor)


def publishRange(server: ServerProcess, channel: str, start: int, stop: int) -> None:
    """
    Publish C{{"seq": n}} for each n, through the HTTP API (blocking).
    """
    for seq in range(start, stop):
        publish(server, channel, {"seq": seq})


def freePorts(count: int) -> list[int]:
    """
    Ports free now, for a server that must come back on the same ones.
    """
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class ServerTests(TestCase):
    """
    Against a real server, with the real reactor.
    """

    def start(self, server: ServerProcess, **kwargs: Any) -> ChannelSubscriber:
        """
        A started subscriber of C{server}, stopped at cleanup.
        """
        subscriber = ChannelSubscriber(server.url("/ws"), reactor, **kwargs)
        self.addCleanup(subscriber.stop)
        subscriber.start()
        return subscriber

    def server(self, *args: str, **kwargs: Any) -> Deferred[ServerProcess]:
        """
        Start a server of the channels protocol, stopped at cleanup.
        """
        server = ServerProcess(*CHANNELS, *args, **kwargs)
        self.addCleanup(shutil.rmtree, server.cwd, True)
        self.addCleanup(deferToThread, server.stop)
        return deferToThread(server.start)

    @inlineCallbacks
    def test_subscribeAndRequests(self) -> Any:
        """
        Messages arrive in order with their positions; publish, presence and
        ping get the server's replies, a refusal a L{SubscriberError}.
        """
        server = yield self.server(*CHAT)
        inbox, chat = Inbox(), Inbox()
        subscriber = self.start(server)
        reply = yield subscriber.subscribe("news:a", inbox)
        self.assertEqual((reply["channel"], reply["offset"]), ("news:a", 0))
        yield deferToThread(publishRange, server, "news:a", 0, 3)
        yield inbox.waitFor(3)
        self.assertEqual([(m.data, m.offset) for m in inbox.messages], [({"seq": n}, n + 1) for n in range(3)])
        self.assertEqual(subscriber.positions["news:a"], Position(reply["epoch"], 3))
        yield subscriber.subscribe("chat:x", chat)
        published = yield subscriber.publish("chat:x", {"text": "hi"})
        self.assertEqual((published["offset"], published["delivered"]), (1, 1))
        yield chat.waitFor(1)
        self.assertEqual(chat.messages[0].data, {"text": "hi"})
        self.assertEqual(len((yield subscriber.presence("chat:x"))["uids"]), 1)
        self.assertEqual((yield subscriber.ping()), {})
        error = yield self.assertFailure(subscriber.publish("news:a", 1), SubscriberError)
        self.assertEqual(error.code, "forbidden")

    @inlineCallbacks
    def test_refusedHandshakeBacksOff(self) -> Any:
        """
        A server that accepts TCP but refuses the WebSocket handshake (here
        the HTTP API port) is retried at growing intervals, not every minDelay.
        """
        server = yield self.server()
        port = server.ports["api-port"]
        endpoint = RecordingEndpoint(reactor, HostnameEndpoint(reactor, "127.0.0.1", port))
        url = f"ws://127.0.0.1:{port}/"
        subscriber = ChannelSubscriber(url, reactor, minDelay=0.05, jitter=lambda: 1.0, endpoint=endpoint)
        self.addCleanup(subscriber.stop)
        subscriber.start()
        yield endpoint.waitFor(5).addTimeout(20, reactor)
        intervals = [b - a for a, b in pairwise(endpoint.attempts)]
        for n, interval in enumerate(intervals):
            self.assertGreaterEqual(interval, 0.05 * 2**n)
        self.assertFalse(subscriber.connected)

    @inlineCallbacks
    def test_resumesAcrossRestart(self) -> Any:
        """
        The server is stopped (SIGTERM) and started again on the same ports
        and SQLite file; the subscriber reconnects by itself and ends with
        every message exactly once, in order: live before, from history
        (published while it was away), and live again.
        """
        ports = freePorts(3)
        names = ("--port", "--api-port", "--push-port")
        args = [a for name, port in zip(names, ports, strict=True) for a in (name, f"tcp:{port}:interface=127.0.0.1")]
        first = yield self.server(*args, defaultPorts=False)
        inbox, lost, statuses = Inbox(), [], []
        subscriber = self.start(first, minDelay=0.2, maxDelay=1.0)
        subscriber.onStatus = lambda kind, detail: statuses.append(kind)
        yield subscriber.subscribe("news:restart", inbox, lost.append)
        yield deferToThread(publishRange, first, "news:restart", 0, 20)
        yield inbox.waitFor(20)
        yield deferToThread(first.stop)
        # Started and published to while the reactor is held here, so that no
        # reconnect can slip in: these 20 can only come from the history.
        second = ServerProcess(*CHANNELS, *args, cwd=first.cwd, defaultPorts=False).start()
        self.addCleanup(deferToThread, second.stop)
        publishRange(second, "news:restart", 20, 40)
        yield deferToThread(publishRange, second, "news:restart", 40, 60)  # while it resumes
        yield inbox.waitFor(60)
        self.assertEqual([m.data["seq"] for m in inbox.messages], list(range(60)))
        self.assertEqual([m.offset for m in inbox.messages], list(range(1, 61)))
        self.assertEqual(len({m.epoch for m in inbox.messages}), 1)
        self.assertEqual((lost, statuses.count("open"), statuses.count("closed")), ([], 2, 1))


#: ``realtime-push`` as a terminal starts it, where ^C interrupts: a
#: suite run as a background job ignores SIGINT, its children would too
#: (Python and Twisted leave an ignored SIGINT ignored), and the tests
#: that stop the command with SIGINT would wait on it in vain
COMMAND = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from realtime.client.cli import main; sys.exit(main())"
)


class CommandTests(SynchronousTestCase):
    """
    ``realtime-push subscribe`` as a subprocess.
    """

    def command(self, server: ServerProcess | None, *args: str) -> subprocess.Popen[str]:
        """
        Start ``realtime-push subscribe ARGS`` in C{server}'s directory
        (without a server, in this one).
        """
        process = subprocess.Popen(
            [sys.executable, "-c", COMMAND, "subscribe", *args],
            env=environment(),
            cwd=None if server is None else server.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(process.communicate)
        self.addCleanup(process.kill)
        return process

    def test_printsMessages(self) -> None:
        """
        From C{--since}, then live, one JSON line per message; a ready line
        once subscribed; SIGINT ends it with 0.  Every wait is for a line,
        never for a time, so a loaded machine only makes it slower.
        """
        server = ServerProcess(*CHANNELS).start(timeout=120)
        self.addCleanup(shutil.rmtree, server.cwd, True)
        self.addCleanup(server.stop)
        epoch = publish(server, "news:cli", {"seq": 0})["epoch"]
        process = self.command(server, "news:cli", "--url", server.url("/ws"), "--since", f"{epoch}:0")
        out, err = OutputLines(process.stdout), OutputLines(process.stderr)
        err.waitFor("realtime-push: ready")
        publish(server, "news:cli", {"seq": 1})
        lines = [json.loads(line) for line in out.waitFor('"channel"', count=2)]
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(120), 0, err.lines)
        expected = [{"channel": "news:cli", "epoch": epoch, "offset": n + 1, "data": {"seq": n}} for n in (0, 1)]
        self.assertEqual(lines, expected)

    def test_interruptedWhileConnecting(self) -> None:
        """
        SIGINT while the WebSocket handshake waits for an answer that does
        not come ends the command with 0 and nothing printed on stdout.
        """
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        process = self.command(None, "x", "--url", f"ws://127.0.0.1:{silent.getsockname()[1]}/ws")
        silent.settimeout(120)
        accepted, _ = silent.accept()  # the command is connecting: its reactor runs
        self.addCleanup(accepted.close)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        self.assertEqual((process.returncode, out), (0, ""), err)

    def test_refused(self) -> None:
        """
        A channel the server refuses ends the command with 2 and the reason.
        """
        server = ServerProcess(*CHANNELS).start()
        self.addCleanup(shutil.rmtree, server.cwd, True)
        self.addCleanup(server.stop)
        process = self.command(server, "private:x", "--url", server.url("/ws"))
        out, err = process.communicate(timeout=30)
        self.assertEqual((process.returncode, out), (2, ""))
        self.assertIn("forbidden", err)

    def test_badSince(self) -> None:
        """
        C{--since} needs EPOCH:OFFSET and a single channel.
        """
        for args in (["a", "--since", "x"], ["a", "b", "--since", "e:1"]):
            err = io.StringIO()
            self.assertEqual(main(["subscribe", *args], stdout=err, stderr=err), 2)
            self.assertIn("--since wants EPOCH:OFFSET", err.getvalue())
