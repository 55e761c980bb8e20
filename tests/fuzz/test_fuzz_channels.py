"""
Fuzzing the channels protocol: every request gets exactly one reply, an
error one with a documented code if it is not well formed, and the
connection stays open.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.core.channelwire import ERRORS, OPS, Failure, Request, encodePush, parseRequest
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.routing.channels import ChannelsStrategy
from realtime.store.memory import MemoryMessageStore
from tests.fuzz.support import anyText, fuzz, noTracebacks, objectsWith, values
from tests.support import ProtocolTestCase, buildRouter, clientFrame

since = st.fixed_dictionaries({"epoch": st.one_of(anyText, values), "offset": st.one_of(st.integers(), values)})
requestTexts = objectsWith(
    {
        "id": st.one_of(st.integers(), anyText),
        "op": st.one_of(st.sampled_from(OPS), anyText),
        "channel": st.one_of(st.sampled_from(["room:1", "room:2", "hist:1", "secret", "bad channel"]), anyText),
        "since": since,
        "data": values,
    }
)
#: a text or binary message
messages = st.tuples(requestTexts.map(lambda t: t.encode("utf-8", "surrogatepass")), st.booleans())


class ChannelsFuzzTests(ProtocolTestCase):
    """
    One channels connection, fed every generated request in turn.
    """

    def setUp(self) -> None:
        super().setUp()
        rules = NamespaceRules(
            [
                parseNamespaceSpec("room:*:public=true:publish=true:presence=true"),
                parseNamespaceSpec("hist:*:public=true:publish=true:history=5:ttl=60"),
            ]
        )
        router = buildRouter(self.clock, MemoryMessageStore(), rules, offline=None, framePush=encodePush)
        self.serve(AnonymousAuthenticator(), ChannelsStrategy(router.channels), router=router)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    @fuzz
    @given(messages)
    def test_parseRequest(self, message: tuple[bytes, bool]) -> None:
        """
        L{parseRequest} gives a request or a failure with a documented code.
        """
        payload, isBinary = message
        parsed = parseRequest(payload, isBinary)
        self.assertIsInstance(parsed, (Request, Failure))
        if isinstance(parsed, Failure):
            self.assertIn(parsed.code, ERRORS)

    @fuzz
    @given(st.lists(messages, min_size=1, max_size=4))
    def test_connection(self, batch: list[tuple[bytes, bool]]) -> None:
        """
        One reply per message, in order, each valid JSON with a documented
        error code when it is an error; no close, nothing logged; a ping is
        then still answered.
        """
        data = b"".join(clientFrame(p, opcode=2 if isBinary else 1) for p, isBinary in batch)
        with noTracebacks():
            self.proto.dataReceived(data + clientFrame(b'{"id":"last","op":"ping"}'))
            frames = self.frames(self.transport)
        self.assertEqual({opcode for opcode, _ in frames}, {1}, frames[-1:])
        replies = [f for f in (json.loads(p) for _, p in frames) if f["type"] == "reply"]
        self.assertEqual(len(replies), len(batch) + 1, replies)
        for reply in replies:
            if not reply["ok"]:
                self.assertIn(reply["error"]["code"], ERRORS, reply)
        self.assertEqual((replies[-1]["id"], replies[-1]["ok"]), ("last", True))
        # in the order the requests were sent
        self.assertEqual([r["id"] for r in replies], [parseRequest(p, b).id for p, b in batch] + ["last"])
        self.assertEqual(self.proto.state, self.proto.STATE_OPEN)
