"""
A Twisted client of the channels protocol for workers and services: the
Python counterpart of ``realtime.js``::

    subscriber = ChannelSubscriber("ws://127.0.0.1:8080/ws", reactor, positions=saved)
    subscriber.subscribe("news:sport", lambda m: print(m.offset, m.data), onLost=reload)
    subscriber.start()              # or SubscriberService(subscriber).setServiceParent(app)
    save(subscriber.positions)      # {channel: Position}: resume from there after a restart

It reconnects with backoff and jitter and resubscribes each channel from its last position, so what
was published meanwhile arrives in order, exactly once.  The logic (positions, duplicates, request
ids) is L{ChannelSubscriber}, which sees messages as bytes and needs no socket; the Autobahn protocol
only forwards events to it, and C{ClientService} keeps a connection up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from realtime.core.jsoncodec import JSONError, decode, encode
from realtime.values import Position

#: errors found by this client, not the server: the request may succeed on the next connection
CLIENT_CODES = ("not_connected", "connection_lost", "timeout", "already_subscribed", "not_subscribed")
Result = dict[str, Any]
OnMessage = Callable[["ChannelMessage"], object]
OnLost = Callable[[Result], object]
_log = Logger()


class SubscriberError(Exception):
    """A failed request: the server's error (L{realtime.core.channelwire.ERRORS}) or one of L{CLIENT_CODES}."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A channel message; no C{epoch} and C{offset} where the namespace keeps no history."""

    channel: str
    data: Any
    epoch: str | None = None
    offset: int | None = None


@dataclass
class _Channel:
    onMessage: OnMessage
    onLost: OnLost | None
    waiter: Deferred[Result] | None = None  # subscribe() made while not connected


def backoffDelay(attempt: int, minDelay: float, maxDelay: float, jitter: Callable[[], float]) -> float:
    """
    The wait before reconnect attempt C{attempt} (from 0), as in realtime.js: between half and all of
    C{min(maxDelay, minDelay * 2**attempt)}, so the clients a restart dropped do not all come back at once.
    """
    delay = min(maxDelay, minDelay * 2.0 ** min(attempt, 64))
    return delay / 2 + jitter() * delay / 2


class ChannelSubscriber:
    """
    Channel subscriptions over one reconnecting WebSocket.

    @ivar positions: channel -> last L{Position} received, updated in place; never moves back in an epoch.
    @ivar onPush: gets each backend push (C{str}; C{bytes} if binary) and any text message not the protocol's.
    @ivar onEvent: gets each C{join}/C{leave} event; C{onStatus} C{("open", url)} and C{("closed", reason)}.
    """

    onPush: Callable[[str | bytes], object] | None = None
    onEvent: Callable[[Result], object] | None = None
    onStatus: Callable[[str, str], object] | None = None

    def __init__(
        self, url: str, reactor: Any, *, headers: Mapping[str, str] | None = None,
        protocols: Sequence[str] | None = None, firstMessage: str | bytes | None = None,
        minDelay: float = 0.5, maxDelay: float = 30.0, requestTimeout: float = 10.0,
        positions: Mapping[str, Position] | None = None, endpoint: IStreamClientEndpoint | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:  # fmt: skip
        """
        @param reactor: for time (a C{Clock} in tests) and, without C{endpoint}, to connect.
        @param firstMessage: sent first on every connection (uid-first-packet auth).
        @param positions: where to resume each channel, e.g. saved by a previous process.
        @param endpoint: instead of C{url}'s host and port (a Unix socket, a proxy, own TLS options).
        """
        self.url = url
        self.positions: dict[str, Position] = dict(positions or {})
        self._reactor = reactor
        self._firstMessage = firstMessage.encode("utf-8") if isinstance(firstMessage, str) else firstMessage
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[int, tuple[Deferred[Result], IDelayedCall]] = {}
        self._send: Callable[[bytes], None] | None = None
        self._close: Callable[[], None] = lambda: None
        self._stopping: list[Deferred[None]] = []
        self._backoff = partial(backoffDelay, minDelay=minDelay, maxDelay=maxDelay, jitter=jitter)
        self._nextId, self._attempt = 1, 0
        headers, protocols = dict(headers or {}), list(protocols or ())
        factory = SubscriberFactory(url, headers=headers, protocols=protocols, reactor=reactor)
        factory.protocol, factory.subscriber = SubscriberProtocol, self
        # a peer that vanished without a FIN is found by pings, not by requests nobody happens to make
        wait = self._requestTimeout = requestTimeout
        factory.setProtocolOptions(openHandshakeTimeout=wait, autoPingInterval=max(30, wait), autoPingTimeout=wait)
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, factory.host, factory.port)
            if factory.isSecure:
                from twisted.internet.ssl import optionsForClientTLS

                endpoint = wrapClientTLS(optionsForClientTLS(factory.host), endpoint)
        self.service = ClientService(endpoint, factory, self._retryDelay, reactor)

    @property
    def connected(self) -> bool:
        """Whether a WebSocket is open."""
        return self._send is not None

    def start(self) -> None:
        """Connect, and keep reconnecting until L{stop}."""
        if not self.service.running:
            self.service.startService()

    def stop(self) -> Deferred[None]:
        """Close (1000), stop reconnecting; fires once the connection is gone.  Subscriptions stay."""
        if self._send is None:
            return self.service.stopService() if self.service.running else succeed(None)
        # ClientService would drop TCP mid-close (Autobahn then leaks its close timer): stop once the server closed
        self._close()
        self._stopping.append(Deferred())
        return self._stopping[-1]

    def subscribe(self, channel: str, onMessage: OnMessage, onLost: OnLost | None = None) -> Deferred[Result]:
        """
        Get C{channel}'s messages, from C{positions[channel]} if there is one.

        @param onLost: gets the reply to a resume that could not be served
            (C{"recovered": false}): messages were lost, reload your state.
        @return: the reply to the first subscribe sent (on the next connection if none is open).
            A server refusal forgets the channel; one of L{CLIENT_CODES} keeps it for the next connection.
        """
        if channel in self._channels:
            return fail(SubscriberError("already_subscribed", f"already subscribed to {channel!r}"))
        state = self._channels[channel] = _Channel(onMessage, onLost)
        if self._send is None:
            state.waiter = Deferred()
            return state.waiter
        return self._sendSubscribe(channel, state)

    def unsubscribe(self, channel: str) -> Deferred[Result | None]:
        """Stop getting C{channel}'s messages, forget its position; the reply (C{None} if not connected)."""
        state = self._channels.pop(channel, None)
        self.positions.pop(channel, None)
        if state is None:
            return fail(SubscriberError("not_subscribed", f"not subscribed to {channel!r}"))
        if state.waiter is not None:
            state.waiter.cancel()
        if not self._send:
            return succeed(None)
        return cast("Deferred[Result | None]", self._request("unsubscribe", {"channel": channel}))

    def publish(self, channel: str, data: Any) -> Deferred[Result]:
        """Publish C{data}, any JSON value, where the namespace allows it."""
        return self._request("publish", {"channel": channel, "data": data})

    def presence(self, channel: str) -> Deferred[Result]:
        """Who is in C{channel}, where the namespace has presence."""
        return self._request("presence", {"channel": channel})

    def ping(self) -> Deferred[Result]:
        """A round trip to the server."""
        return self._request("ping", {})

    def connectionOpened(self, send: Callable[[bytes], None], close: Callable[[], None]) -> None:
        """A WebSocket opened: authenticate if asked to, then resubscribe each channel from its position."""
        self._send, self._close, self._attempt = send, close, 0
        if self._firstMessage is not None:
            send(self._firstMessage)
        self._call(self.onStatus, "open", self.url)
        for name, state in list(self._channels.items()):
            request = self._sendSubscribe(name, state)
            waiter, state.waiter = state.waiter, None
            if waiter is not None and not waiter.called:
                request.chainDeferred(waiter)
            else:
                request.addErrback(self._ebResubscribe, name)

    def connectionClosed(self, reason: str) -> None:
        """The connection is gone or never opened: fail the requests waiting on it; C{service} reconnects."""
        wasOpen, self._send, self._close = self._send is not None, None, lambda: None
        pending, self._pending = self._pending, {}
        for d, timer in pending.values():
            timer.cancel()
            d.errback(SubscriberError("connection_lost", f"connection closed: {reason}"))
        if wasOpen:
            self._call(self.onStatus, "closed", reason)
        stopping, self._stopping = self._stopping, []
        for stopped in stopping:
            self.service.stopService().chainDeferred(stopped)

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        """Dispatch one WebSocket message from the server."""
        if isBinary:
            self._call(self.onPush, payload)
            return
        text = payload.decode("utf-8", "replace")
        try:
            message = decode(text)
        except JSONError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "reply":
            self._replied(message)
        elif kind == "message":
            self._channelMessage(message)
        elif kind == "push":
            self._call(self.onPush, message.get("data"))
        elif isinstance(kind, str):
            self._call(self.onEvent, message)
        else:
            self._call(self.onPush, text)

    def _retryDelay(self, failures: int) -> float:
        # counted from the last WebSocket open, not TCP connect as ClientService does, so a refused handshake
        # backs off too; and no callback from here: stop() would re-enter ClientService's state machine
        self._attempt += 1
        return self._backoff(self._attempt - 1)

    def _request(self, op: str, fields: Result) -> Deferred[Result]:
        if self._send is None:
            return fail(SubscriberError("not_connected", f"cannot {op}: not connected"))
        requestId, self._nextId = self._nextId, self._nextId + 1
        d: Deferred[Result] = Deferred(lambda _: self._pending.pop(requestId)[1].cancel())
        timer = self._reactor.callLater(self._requestTimeout, self._timedOut, requestId, op)
        self._pending[requestId] = (d, timer)
        self._send(encode({"id": requestId, "op": op, **fields}))
        return d

    def _take(self, requestId: Any) -> Deferred[Result] | None:
        # None when the request timed out: nobody waits any more
        d, timer = self._pending.pop(requestId, (None, None)) if isinstance(requestId, int) else (None, None)
        if timer is not None and timer.active():
            timer.cancel()
        return d

    def _timedOut(self, requestId: int, op: str) -> None:
        d = self._take(requestId)
        if d is not None:
            d.errback(SubscriberError("timeout", f"no reply to {op} within {self._requestTimeout} s"))

    def _replied(self, message: Result) -> None:
        d = self._take(message.get("id"))
        if d is not None and message.get("ok"):
            d.callback(message.get("result") or {})
        elif d is not None:
            error = message["error"] if isinstance(message.get("error"), dict) else {}
            d.errback(SubscriberError(str(error.get("code", "internal")), str(error.get("message", ""))))

    def _sendSubscribe(self, name: str, state: _Channel) -> Deferred[Result]:
        since = self.positions.get(name)
        fields: Result = {"channel": name}
        if since is not None:
            fields["since"] = {"epoch": since.epoch, "offset": since.offset}
        d = self._request("subscribe", fields)
        return d.addErrback(self._ebSubscribe, name, state).addCallback(self._subscribed, name, state, bool(since))

    def _subscribed(self, result: Result, name: str, state: _Channel, resumed: bool) -> Result:
        if self._channels.get(name) is not state:
            return result  # unsubscribed meanwhile
        epoch, offset = result.get("epoch"), result.get("offset")
        if isinstance(epoch, str) and isinstance(offset, int):
            # messages released before this reply may have moved the position past it already
            self._advance(name, epoch, offset)
        if resumed and result.get("recovered") is False:
            self._call(state.onLost, result)
        return result

    def _ebSubscribe(self, failure: Failure, name: str, state: _Channel) -> Failure:
        refused = isinstance(failure.value, SubscriberError) and failure.value.code not in CLIENT_CODES
        if refused and self._channels.get(name) is state:
            del self._channels[name]
        return failure

    def _ebResubscribe(self, failure: Failure, name: str) -> None:
        if not (isinstance(failure.value, SubscriberError) and failure.value.code in CLIENT_CODES):
            _log.failure("resubscribing to {channel} failed", failure, channel=name)

    def _channelMessage(self, message: Result) -> None:
        name = message.get("channel")
        state = self._channels.get(name) if isinstance(name, str) else None
        if state is None or not isinstance(name, str):
            return
        epoch, offset = message.get("epoch"), message.get("offset")
        if isinstance(epoch, str) and isinstance(offset, int) and not self._advance(name, epoch, offset):
            return  # a duplicate, e.g. delivered live and again from history across a reconnect
        self._call(state.onMessage, ChannelMessage(name, message.get("data"), epoch, offset))

    def _advance(self, name: str, epoch: str, offset: int) -> bool:
        # a new epoch is always ahead: the history of the old one is gone
        current = self.positions.get(name)
        if current is not None and current.epoch == epoch and offset <= current.offset:
            return False
        self.positions[name] = Position(epoch, offset)
        return True

    def _call(self, callback: Callable[..., object] | None, *args: Any) -> None:
        # a raising callback must not break the deliveries after it
        if callback is not None:
            try:
                callback(*args)
            except Exception:
                _log.failure("{callback} raised", callback=callback)


class SubscriberFactory(WebSocketClientFactory):
    """Autobahn's client factory, holding the L{ChannelSubscriber} its protocols report to."""

    subscriber: ChannelSubscriber


class SubscriberProtocol(WebSocketClientProtocol):
    """Forwards WebSocket events to the factory's L{ChannelSubscriber}."""

    def onOpen(self) -> None:
        self.factory.subscriber.connectionOpened(self._sendText, self._leave)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.subscriber.messageReceived(payload, isBinary)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.subscriber.connectionClosed(reason.getErrorMessage())

    def _leave(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)

    def _sendText(self, payload: bytes) -> None:
        # while closing nothing is sent: the request fails with connection_lost in a moment
        if self.state == self.STATE_OPEN:
            self.sendMessage(payload, isBinary=False)


class SubscriberService(Service):
    """A L{ChannelSubscriber} as an C{IService}, started and stopped with its parent."""

    def __init__(self, subscriber: ChannelSubscriber) -> None:
        self.subscriber = subscriber

    def startService(self) -> None:
        super().startService()
        self.subscriber.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.subscriber.stop()
