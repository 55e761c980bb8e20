"""
Tests for L{realtime.broker.redismessages}: what nodes say to each other.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from realtime.broker.redismessages import BadMessage, ChannelNames, RedisMessage, decode, encode, wrapHeader

_tokens = st.text(alphabet="abcdef0123456789", min_size=1, max_size=16)


class CodecTests(SynchronousTestCase):
    @given(st.binary(), st.booleans(), _tokens, st.one_of(st.none(), st.integers(1, 2**63)), st.one_of(st.none(), _tokens))
    def test_roundTrip(self, payload: bytes, isBinary: bool, origin: str, offset: int | None, epoch: str | None) -> None:
        """
        Every message decodes to what was encoded, payload bytes included
        (newlines and all).
        """
        self.assertEqual(decode(encode(payload, isBinary, origin, offset, epoch)), RedisMessage(payload, isBinary, offset, epoch, origin))

    @given(st.binary(), _tokens, st.integers(1, 2**63), _tokens)
    def test_channelData(self, data: bytes, origin: str, offset: int, epoch: str) -> None:
        """
        What the store's publish script writes around a channel's data
        (the header's two parts, the offset and epoch between them) decodes
        as channel data to wrap, with its offset and epoch.
        """
        before, after = wrapHeader(origin)
        message = decode(before + b"%d %s" % (offset, epoch.encode()) + after + data)
        self.assertEqual(message, RedisMessage(data, False, offset, epoch, origin, wrap=True))

    def test_refusesOthers(self) -> None:
        """
        Someone else's PUBLISH on our channel is refused, not delivered.
        """
        for data in (b"hello", b"R2 t - - n\nx", b"R1 x - - n\nx", b"R1 t x - n\nx", b"R1 t - -\nx", b"R1 c - - n\nx", b""):
            with self.assertRaises(BadMessage):
                decode(data)


class ChannelNamesTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        Each of our channel names parses back to whom it is for; others' do not.
        """
        names = ChannelNames("rt")
        self.assertEqual(names.parse(names.uid("u:1{x}")), ("uid", "u:1{x}"))
        self.assertEqual(names.parse(names.channel("room:a")), ("channel", "room:a"))
        self.assertEqual(names.parse(names.everyone), ("all", ""))
        self.assertEqual(names.parse(names.node("n1")), ("node", "n1"))
        self.assertIsNone(names.parse("other:{u:1}:push"))
        self.assertIsNone(names.parse("rt:{u:1}:nope"))
