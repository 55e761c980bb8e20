"""
How a push travels between nodes: which Redis pub/sub channel carries it,
and the bytes of the message.

The Redis channel says whom it is for (a uid's, a channel's, everyone's, a
node's), so the message carries only what the receiving node needs to
deliver it: the payload, whether it is binary, and for a channel message
its offset and epoch (so a subscriber catching up from history can tell a
live copy from a new message, and a node can notice a gap).  The header is
one line of ASCII words, then the payload as it is:

    R1 <t|b|c> <offset|-> <epoch|-> <origin node>\\n<payload>

The kind is C{t} for a text payload delivered as it is, C{b} for a binary
one, and C{c} for a channel's data to wrap: the payload is the JSON text a
backend or a client published, kept in history as it is, and the receiving
node makes the client's frame of it
(L{realtime.core.channelwire.encodeMessage} with the channel, offset and
epoch), so the store's publish script, which writes this header
(L{wrapHeader}), never formats JSON.  A C{c} message always has an offset
and an epoch.

A uid's and a channel's Redis channels carry the hash tag of that uid's or
channel's keys, so on Redis Cluster the store's publish script may publish
on them (sharded pub/sub keeps a message on the slot of its channel; see
L{realtime.redisio.pubsubCommands}).  The channel every node hears has no
tag: on a cluster it is sharded on the slot of its whole name, one master's.
"""

from __future__ import annotations

from typing import NamedTuple

from realtime.redisio import channelKey, uidKey

__all__ = ["RedisMessage", "encode", "decode", "wrapHeader", "ChannelNames", "BadMessage"]

_VERSION = b"R1"


class BadMessage(ValueError):
    """
    Bytes on a Redis channel of ours that are not a message this version
    reads (another version of the server, or someone else's PUBLISH).
    """


class RedisMessage(NamedTuple):
    payload: bytes
    isBinary: bool
    offset: int | None
    epoch: str | None
    origin: str
    #: the payload is a channel's data for the receiver to wrap (kind C{c})
    wrap: bool = False


def encode(payload: bytes, isBinary: bool, origin: str, offset: int | None = None, epoch: str | None = None) -> bytes:
    """
    The message as it is published.

    @param origin: the publishing node's id (ASCII, no spaces).
    """
    header = b" ".join(
        (
            _VERSION,
            b"b" if isBinary else b"t",
            b"-" if offset is None else str(offset).encode(),
            b"-" if epoch is None else epoch.encode("ascii"),
            origin.encode("ascii"),
        )
    )
    return header + b"\n" + payload


def wrapHeader(origin: str) -> tuple[bytes, bytes]:
    """
    The header of a channel's data to wrap (kind C{c}), around its offset
    and epoch: C{before + b"%d %s" % (offset, epoch) + after + data} is the
    message, which is how the store's publish script writes it
    (L{realtime.store.redisscripts.APPEND_PUBLISH}) without knowing the
    format.
    """
    return _VERSION + b" c ", b" " + origin.encode("ascii") + b"\n"


def decode(data: bytes) -> RedisMessage:
    """
    The message in C{data}.

    @raise BadMessage: C{data} is not one.
    """
    header, newline, payload = data.partition(b"\n")
    words = header.split(b" ")
    if not newline or len(words) != 5 or words[0] != _VERSION or words[1] not in (b"t", b"b", b"c"):
        raise BadMessage(f"not a realtime message: {data[:40]!r}")
    _, kind, offset, epoch, origin = words
    wrap = kind == b"c"
    if wrap and (offset == b"-" or epoch == b"-"):
        raise BadMessage(f"channel data without its offset and epoch: {data[:40]!r}")
    try:
        return RedisMessage(
            payload,
            kind == b"b",
            None if offset == b"-" else int(offset),
            None if epoch == b"-" else epoch.decode("ascii"),
            origin.decode("ascii"),
            wrap,
        )
    except (ValueError, UnicodeDecodeError) as e:
        raise BadMessage(f"not a realtime message: {data[:40]!r}") from e


class ChannelNames:
    """
    The Redis pub/sub channels of one deployment (one key prefix).
    """

    def __init__(self, prefix: str = "realtime") -> None:
        self.prefix = prefix
        #: broadcasts, and what every node must hear
        self.everyone = f"{prefix}:all"

    def uid(self, uid: str) -> str:
        return uidKey(self.prefix, uid, "push")

    def channel(self, name: str) -> str:
        return channelKey(self.prefix, name, "pub")

    def node(self, node: str) -> str:
        """A node's own channel: pushes to its sessions by id, its probe."""
        return f"{self.prefix}:node:{node}"

    def parse(self, redisChannel: str) -> tuple[str, str] | None:
        """
        C{("uid", uid)}, C{("channel", name)}, C{("all", "")} or
        C{("node", id)} for one of our channels; C{None} otherwise.
        """
        if redisChannel == self.everyone:
            return ("all", "")
        head = self.prefix + ":"
        if not redisChannel.startswith(head):
            return None
        rest = redisChannel[len(head) :]
        if rest.startswith("node:"):
            return ("node", rest[5:])
        for kind, tag, tail in (("uid", "{u:", "}:push"), ("channel", "{ch:", "}:pub")):
            if rest.startswith(tag) and rest.endswith(tail):
                return (kind, rest[len(tag) : -len(tail)])
        return None
