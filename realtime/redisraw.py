"""
The broker's two hot paths without redis-py's per-reply layers: a
pipeline's replies and a pub/sub connection's buffered messages, read in
bulk from the connection's hiredis reader.

redis-py wraps every reply in a coroutine, an asyncio timer, a retry
wrapper and a response-callback lookup, and formats every RESP3 pub/sub
message for a debug log nobody reads.  Measured here (one process, a real
redis-server): a pipelined C{PUBLISH}+C{HGETALL} pair cost 19 us of Python
through C{Pipeline.execute} and 4.5 us read this way; a pub/sub message cost
12-19 us through C{get_message} and 0.4 us drained this way.  Commands are
packed by hiredis's C{pack_command} (0.5 us against redis-py's 3.2 us).  At the rates a
push server runs, that is most of its CPU.

What stays redis-py's: connecting (TLS, AUTH, C{HELLO 3}, Sentinel's master
discovery), the pool, the command methods, the response callbacks, and - for
pub/sub - waiting for the first message, reconnecting and subscribing again.
This module is the only one that touches redis-py's private names (a
connection's parser, its hiredis reader and the value it answers for an
incomplete reply), so a redis-py release that moves them breaks here, and
its tests say so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hiredis import pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA as _INCOMPLETE
from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
from redis.asyncio.client import Redis
from redis.commands import AsyncCoreCommands
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

try:
    #: what hiredis (3.2 and later) makes of a RESP3 push
    from hiredis import PushNotification as _Push

    _PUSHES: tuple[type, ...] = (_Push,)
except ImportError:  # pragma: no cover - an older hiredis answers lists
    _PUSHES = ()

__all__ = [
    "RawPipeline",
    "canPipelineRaw",
    "commandBytes",
    "commandHead",
    "drainMessages",
    "quietPushes",
    "Heard",
    "heardOf",
]

#: what a pub/sub read hands on: (C{"message"}, C{"subscribe"} for a
#: subscription Redis confirmed, or C{"sunsubscribe"}), the Redis channel,
#: the data (C{None} but for a message)
Heard = tuple[str, Any, Any]

#: the options redis-py's command methods pass that are not for the
#: response callback (what C{Redis.parse_response} removes)
_NOT_FOR_CALLBACKS = ("keys", "NEVER_DECODE", "EMPTY_RESPONSE")
_KEYS_ONLY = {"keys"}
#: what a command of L{RawPipeline.packed} keeps for its reply: nothing
_BARE: tuple[tuple[Any, ...], None] = ((), None)

#: the pub/sub replies that carry a message (classic and sharded)
_MESSAGES = (b"message", b"smessage")
#: the confirmations of a subscription (classic and sharded)
_SUBSCRIBED = ("subscribe", "ssubscribe")


def heardOf(message: dict[str, Any]) -> list[Heard]:
    """
    A message redis-py handled (a C{dict} of its C{handle_message}) as the
    link hears it: a message, a confirmed subscription, or nothing for any
    other reply (an unsubscription's answer).
    """
    kind = message.get("type")
    if kind in ("message", "smessage"):
        return [("message", message["channel"], message["data"])]
    if kind in _SUBSCRIBED:
        return [("subscribe", message["channel"], None)]
    return []


#: how C{pack_command} ends a command whose last argument is empty
_EMPTY_LAST = b"$0\r\n\r\n"


def commandBytes(*args: Any) -> bytes:
    """
    A whole command packed, for L{RawPipeline.packed}.
    """
    return pack_command(args)


def commandHead(*args: Any) -> bytes:
    """
    A command packed up to the argument that follows C{args}, its last,
    which L{RawPipeline.packed} adds: a node pushing to a uid packs only
    the payload; the rest is the uid's, made once.
    """
    packed = pack_command((*args, b""))
    assert packed.endswith(_EMPTY_LAST)
    return packed[: -len(_EMPTY_LAST)]


def canPipelineRaw(client: Any) -> bool:
    """
    Whether C{client}'s pipelines can be read here: a single Redis (or
    Sentinel's master) whose connections parse with hiredis.  A cluster's
    pipelines are split by slot, which only redis-py's cluster pipeline does.
    """
    if not isinstance(client, Redis):
        return False
    parser = client.connection_pool.connection_kwargs.get("parser_class")
    return parser is None or (isinstance(parser, type) and issubclass(parser, _HiredisParser))


async def quietPushes(response: Any) -> Any:
    """
    A pub/sub push handler that passes each message on as it is: redis-py's
    default formats every message into a debug log line first.
    """
    return response


class RawPipeline(AsyncCoreCommands):
    """
    A pipeline with redis-py's command methods (C{hgetall}, C{zadd}...) that
    sends its commands on one pooled connection and reads every reply from
    the connection's hiredis reader, applying the client's response
    callbacks as C{Pipeline.execute} does.

    Scripts are loaded by a C{SCRIPT LOAD} ahead of the commands, in the
    same round trip: that is what keeps C{EVALSHA} from ever meeting a Redis
    that lost its scripts (restarted, failed over), without redis-py's extra
    C{SCRIPT EXISTS} round trip per pipeline.  A reply error is answered as
    the exception, in its place; a connection that fails fails the pipeline
    (nothing is retried: a command may have run, and the caller says so).
    """

    #: what redis-py's command mixins declare for their clients; no command
    #: queued here dispatches events
    _event_dispatcher: Any = None

    def __init__(self, client: Any, timeout: float, callbacks: dict[Any, Any] | None = None) -> None:
        """
        @param callbacks: a cache of the client's response callbacks by
            command name, kept by the caller across pipelines (the client's
            own table upper-cases every name it is asked for).
        """
        self._client = client
        self._timeout = timeout
        self._callbacks = {} if callbacks is None else callbacks
        #: each command's arguments and options, for its reply's callback
        self._commands: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = []
        #: what is sent: each command's arguments, packed when the
        #: pipeline is (as redis-py does: a bad argument fails the pipeline,
        #: not the queueing), or its bytes (L{packed})
        self._wire: list[Any] = []
        self.scripts: set[Any] = set()

    def execute_command(self, *args: Any, **options: Any) -> None:
        self._commands.append((args, options))
        self._wire.append(args)

    def bare(self, *args: Any) -> None:
        """
        Queue a command whose reply is answered as Redis sent it (RESP3: a
        map is a C{dict}), without a command method and a response callback
        around it: for the commands a node sends for every push, where those
        two are a tenth of the round trip's Python (C{bench/redisclient.py}).
        """
        self._commands.append((args, None))
        self._wire.append(args)

    def packed(self, head: bytes, last: bytes, after: bytes, count: int) -> None:
        """
        Queue C{count} commands made of parts packed once: a command's
        C{head} (L{commandHead}) with its C{last} argument, then C{after},
        commands packed whole (L{commandBytes}); answered as L{bare} answers.
        A push's C{PUBLISH} and C{HGETALL} made this way, of the uid's parts
        and the payload, cost a quarter of packing the two from their
        arguments.
        """
        self._commands += [_BARE] * count
        self._wire.append(b"%s$%d\r\n%s\r\n%s" % (head, len(last), last, after))

    def __len__(self) -> int:
        return len(self._commands)

    async def execute(self, raise_on_error: bool = False) -> list[Any]:
        """
        Send the commands and answer their replies, in order.
        """
        loads = [("SCRIPT", "LOAD", script.script) for script in self.scripts]
        pool = self._client.connection_pool
        # one deadline for the whole round trip, connecting included: a
        # Redis that takes connections and never answers must not hold the
        # pipeliner (and every push behind it) for ever
        async with asyncio.timeout(self._timeout):
            connection = await pool.get_connection()
            try:
                await _reconnectIfClosed(connection)
                packed = b"".join([c if type(c) is bytes else pack_command(c) for c in [*loads, *self._wire]])
                await connection.send_packed_command(packed, check_health=False)
                replies = await _read(connection, len(loads) + len(self._commands))
                if any(type(r) is ReadOnlyError for r in replies):
                    # a master demoted under us (a failover): a new connection
                    # finds the new one, as redis-py's own read does
                    await connection.disconnect()
            except BaseException:
                # a connection whose replies were not all read is out of step
                await connection.disconnect()
                raise
            finally:
                await pool.release(connection)
        failed = next((r for r in replies[: len(loads)] if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        answers = zip(replies[len(loads) :], self._commands, strict=True)
        parse = self._parse
        return [reply if options is None else parse(reply, args, options) for reply, (args, options) in answers]

    def _parse(self, reply: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        if isinstance(reply, ResponseError):
            return options["EMPTY_RESPONSE"] if "EMPTY_RESPONSE" in options else reply
        name = args[0]
        try:
            callback = self._callbacks[name]
        except KeyError:
            callback = self._callbacks[name] = self._client.response_callbacks.get(name)
        if callback is None:
            return reply
        if not options or options.keys() == _KEYS_ONLY:
            # nearly every command: no option a callback takes
            return callback(reply)
        return callback(reply, **{k: v for k, v in options.items() if k not in _NOT_FOR_CALLBACKS})


async def _reconnectIfClosed(connection: Any) -> None:
    """
    Connect C{connection} again if Redis closed it while it sat in the pool
    (a restart, a failover, an idle timeout).

    redis-py's pool checks that for it, except with RESP3 and maintenance
    notifications on, where it leaves the check to its pipeline's retry;
    these pipelines do not resend (a resent C{PUBLISH} can deliver twice),
    so without this every pooled connection's first pipeline after a Redis
    restart failed.
    """
    stream = getattr(connection, "_reader", None)
    if stream is not None and stream.at_eof():
        await connection.disconnect()
        await connection.connect()


async def _read(connection: Any, count: int) -> list[Any]:
    """
    The next C{count} replies on C{connection}, skipping pushes (a command
    connection gets none unless something asked for them).
    """
    parser = connection._parser
    reader = parser._reader
    if reader is None:
        raise RedisConnectionError("the Redis connection is closed")
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is _INCOMPLETE:
            await parser.read_from_socket()
        elif not isinstance(reply, _PUSHES):
            replies.append(reply)
    return replies


async def drainMessages(pubsub: Any) -> list[Heard]:
    """
    The pub/sub messages already read from C{pubsub}'s connection and not
    handed out yet, and the subscriptions confirmed among them, without
    waiting; any reply but a message goes through redis-py's
    C{handle_message}, which keeps its subscription state.

    Handing a burst out at once is also what lets the node write it to each
    connection with one C{send()}, as it does a burst of local pushes.
    """
    connection = pubsub.connection
    parser = getattr(connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is None:
        return []
    messages: list[Heard] = []
    while (reply := reader.gets()) is not _INCOMPLETE:
        if isinstance(reply, Exception):
            # an error answered on a pub/sub connection (to nothing this
            # node sends there): the messages around it still count
            continue
        if isinstance(reply, list) and len(reply) == 3 and reply[0] in _MESSAGES:
            messages.append(("message", reply[1], reply[2]))
            continue
        handled = await pubsub.handle_message(reply, ignore_subscribe_messages=False)
        if handled is not None:
            messages += heardOf(handled)
    return messages
