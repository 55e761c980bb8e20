"""
Immutable values that cross the boundary between the pure core and the shell.

Authenticators and routing strategies answer with these instead of doing I/O,
so they can be tested with plain values in and values out, and so only the
shell - C{realtime.websocket} for client connections, C{realtime.api} for the
backends' ports, C{realtime.delivery} for the writes - turns a decision into
bytes on a wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from realtime import closecodes


def _frozenMapping() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """
    What an authenticator may look at when a client opens a WebSocket.

    Header names are lower-case.  ``params`` maps each query parameter to all
    of its values, like ``urllib.parse.parse_qs``.  ``peer`` is Autobahn's
    descriptor (``tcp4:127.0.0.1:52914``); ``peerHost`` is just the address of
    the socket's other end (``127.0.0.1``, ``::1``), empty for Unix sockets.  It is a copy of what
    Autobahn parsed so that plugins never import Autobahn.
    """

    path: str
    params: Mapping[str, list[str]]
    headers: Mapping[str, str]
    protocols: tuple[str, ...] = ()
    origin: str | None = None
    peer: str = ""
    peerHost: str = ""

    def param(self, name: str) -> str | None:
        """
        The first value of query parameter C{name}, or C{None}.
        """
        values = self.params.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Identity:
    """
    Who a connection belongs to, as an authenticator established it.

    @ivar uid: the user the backend pushes to; one uid may hold many sessions.
    @ivar channels: channel names (or ``fnmatch`` patterns) this identity may
        subscribe to.
    @ivar claims: free-form facts from the credential (JWT claims, ...).
    @ivar subprotocol: the WebSocket subprotocol to echo in the handshake
        response, which must be one the client offered.
    """

    uid: str
    channels: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=_frozenMapping)
    subprotocol: str | None = None


@dataclass(frozen=True, slots=True)
class Accept:
    """
    The connection is authenticated as C{identity}.
    """

    identity: Identity


@dataclass(frozen=True, slots=True)
class Deny:
    """
    The connection is refused.

    At the handshake C{code} is an HTTP status (401, 403); after the socket is
    open (first-message auth) it is a WebSocket close code (4001, ...).
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class AwaitFirstMessage:
    """
    Accept the upgrade, but let the first message decide who this is.

    Nothing but that first message is accepted until it does; after
    C{timeout} seconds of silence the connection is closed with
    L{closecodes.AUTH_TIMEOUT}.
    """

    timeout: float
    subprotocol: str | None = None


HandshakeDecision = Accept | Deny | AwaitFirstMessage
FirstMessageDecision = Accept | Deny


@dataclass(frozen=True, slots=True)
class Reply:
    """
    Send C{payload} back to the session that sent the message.
    """

    payload: bytes
    isBinary: bool = False


@dataclass(frozen=True, slots=True)
class Deliver:
    """
    Send C{payload} to each of C{sessions}, framed once.
    """

    sessions: tuple[Any, ...]
    payload: bytes
    isBinary: bool = False


@dataclass(frozen=True, slots=True)
class Refuse:
    """
    Tell the sender its message was not accepted, as an error frame; the
    connection stays open.
    """

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Close:
    """
    Close the sender's connection with a WebSocket close code.
    """

    code: int = closecodes.NORMAL
    reason: str = ""


Action = Reply | Deliver | Refuse | Close


@dataclass(frozen=True, slots=True)
class ToUids:
    """
    A backend push addressed to every session of each uid.
    """

    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToAll:
    """
    A backend push addressed to every authenticated session.
    """


@dataclass(frozen=True, slots=True)
class ToChannel:
    """
    A message addressed to every subscriber of a channel.
    """

    name: str


@dataclass(frozen=True, slots=True)
class ToSessions:
    """
    A push addressed to sessions by their ids.
    """

    ids: tuple[str, ...]


Target = ToUids | ToAll | ToSessions | ToChannel


class Envelope(NamedTuple):
    """
    A message on its way from a backend to sessions.

    A named tuple rather than a frozen dataclass, as L{PushResult}: one is
    made for every push, and a frozen dataclass costs several times as much
    to build (C{object.__setattr__} per field), which the line port's hot
    path showed (C{bench/inprocess.py unicast --cpu}).

    @ivar offset: the message's offset in its channel's history, so that a
        subscriber still catching up from history can tell a live copy of
        a message it already has from a new one.
    @ivar epoch: the epoch of that offset, where known: a subscriber's
        offsets start over when its channel's history does.
    """

    target: Target
    payload: bytes
    isBinary: bool = False
    offset: int | None = None
    epoch: str | None = None


#: the uids of a result that names none (shared: it cannot be changed)
_NO_UIDS: Mapping[str, int] = MappingProxyType({})


class PushResult(NamedTuple):
    """
    What a backend is told about its push.

    A named tuple, not a frozen dataclass, for the cost of making one per
    push (see L{Envelope}).

    @ivar delivered: connections the message was written to.
    @ivar uids: per addressed uid, how many connections it reached.
    @ivar queued: uids without a connection whose push waits in their
        offline queue.
    @ivar refused: uids without a connection whose offline queue is full.
    @ivar offset: for a channel message kept in history, its offset.
    @ivar epoch: and the epoch of that offset.
    """

    delivered: int
    uids: Mapping[str, int] = _NO_UIDS
    queued: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    offset: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """
    Where a subscriber is in a stream: the last offset it has, in an epoch.
    """

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Retention:
    """
    How much history a stream keeps: at most C{maxCount} messages, none
    older than C{ttl} seconds.
    """

    maxCount: int
    ttl: float


@dataclass(frozen=True, slots=True)
class OfflineLimits:
    """
    How many pushes a uid without connections may have waiting, for how long.
    """

    maxCount: int
    ttl: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """
    A message as a store keeps it.

    @ivar offset: its place in its stream (history) or queue (offline).
    @ivar timestamp: when it was stored, seconds since the epoch.
    @ivar epoch: the stream's epoch when stored (history; empty for offline
        queues).
    """

    offset: int
    payload: bytes
    isBinary: bool
    timestamp: float
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class History:
    """
    The answer to a history query.

    @ivar epoch: the stream's current epoch.
    @ivar offset: the stream's top offset (0 if it never had a message).
    @ivar messages: the messages after the asked position, in order.
    @ivar recovered: whether C{messages} are exactly everything after the
        asked position (C{False}: another epoch, or a gap).
    """

    epoch: str
    offset: int
    messages: tuple[StoredMessage, ...]
    recovered: bool
