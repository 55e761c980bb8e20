"""
Fuzzing each auth plugin's reading of credentials: whatever a client sends,
the answer is an Accept (of a usable uid), a Deny with a reason, or a wait
for the first message; never an exception.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt
from hypothesis import event, given, note
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.auth.anonymous import AnonymousAuthenticatorFactory
from realtime.auth.firstpacket import FirstPacketAuthenticatorFactory, signFirstPacket
from realtime.auth.token import TokenAuthenticatorFactory
from realtime.auth.wechat import WeChatAuthenticatorFactory
from realtime.testing import makeHandshakeRequest, verifyPlugin
from realtime.values import Accept, AwaitFirstMessage, Deny, HandshakeRequest
from tests.fuzz.support import anyText, dumps, fragments, fuzz, mutated, values

NOW = 1_700_000_000
SECRET = "s" * 32

digits = st.integers(NOW - 1000, NOW + 1000).map(str)
hex40 = st.binary(min_size=20, max_size=20).map(bytes.hex)
fieldText = st.one_of(anyText, digits, hex40, st.sampled_from(["", "u1", "n0nce", "adminx"]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    """
    Tokens: signed claims (right key or not, hostile values), or segments
    of hostile JSON that PyJWT has to read before it checks anything.
    """
    if draw(st.booleans()):
        claims = draw(
            st.dictionaries(st.sampled_from(["sub", "exp", "nbf", "iat", "aud", "iss", "channels"]), values)
            | st.fixed_dictionaries({"sub": fieldText, "exp": st.integers(NOW - 10, NOW + 10)})
        )
        key = draw(st.sampled_from([SECRET, "w" * 32]))
        token = _signed(claims, key)
    else:
        header = draw(st.one_of(st.just('{"alg":"HS256","typ":"JWT"}'), fragments, st.builds(dumps, values)))
        payload = draw(st.one_of(fragments, st.builds(dumps, values)))
        token = ".".join([_b64(header.encode("utf-8", "surrogatepass")), _b64(payload.encode("utf-8", "surrogatepass")), _b64(b"x" * 32)])
    return token if draw(st.booleans()) else draw(mutated(st.just(token)))


def _signed(claims: dict[str, Any], key: str) -> str:
    # PyJWT refuses to sign some claims (a non-string iss, a lone surrogate)
    try:
        return jwt.encode(claims, key, algorithm="HS256")
    except (TypeError, ValueError):
        return "a.b.c"


@st.composite
def requests(draw: st.DrawFn) -> HandshakeRequest:
    """
    A handshake carrying credentials in every place a plugin reads them:
    query, headers, subprotocols.
    """
    names = st.sampled_from(["uid", "timestamp", "nonce", "signature", "token", "x"])
    params = draw(st.dictionaries(names, st.lists(st.one_of(fieldText, jwts()), min_size=1, max_size=2), max_size=5))
    if draw(st.booleans()):
        params["token"] = [draw(jwts())]
    headers = draw(st.dictionaries(names, fieldText, max_size=4))
    if draw(st.booleans()):
        headers["authorization"] = draw(st.one_of(jwts().map(lambda t: "Bearer " + t), anyText))
    wx = st.builds(lambda *parts: "wx." + ".".join(parts), fieldText, fieldText, fieldText, fieldText)
    protocols = tuple(draw(st.lists(st.one_of(wx, hex40, anyText), max_size=3, unique=True)))
    return HandshakeRequest(path="/", params=params, headers=headers, protocols=protocols, origin=None)


class AuthFuzzTests(SynchronousTestCase):
    """
    Each plugin, built through its factory as C{--auth} builds it.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        build = lambda factory, **options: verifyPlugin(factory, options, self.clock)  # noqa: E731
        self.plugins = {
            "anonymous": build(AnonymousAuthenticatorFactory()),
            "uid-first-packet": build(FirstPacketAuthenticatorFactory()),
            "uid-first-packet hmac": build(FirstPacketAuthenticatorFactory(), verify="hmac", secret=SECRET),
            "wechat": build(WeChatAuthenticatorFactory(), token=SECRET),
            "wechat seed": build(WeChatAuthenticatorFactory(), token=SECRET, mode="seed"),
            "token": build(TokenAuthenticatorFactory(), secret=SECRET),
        }

    def checkDecision(self, name: str, request: HandshakeRequest, decision: object) -> None:
        self.assertIsInstance(decision, (Accept, Deny, AwaitFirstMessage))
        event(f"{name}: {type(decision).__name__}")
        if isinstance(decision, Accept):
            uid = decision.identity.uid
            self.assertTrue(isinstance(uid, str) and uid, decision)
            uid.encode("utf-8")
            subprotocol = decision.identity.subprotocol
            self.assertTrue(subprotocol is None or subprotocol in request.protocols, decision)
        elif isinstance(decision, Deny):
            self.assertTrue(isinstance(decision.reason, str) and decision.reason, decision)
            decision.reason.encode("utf-8")

    @fuzz
    @given(requests())
    def test_handshake(self, request: HandshakeRequest) -> None:
        """
        Every plugin decides every handshake; a valid token is still
        accepted after.
        """
        note(repr(request))
        for name, plugin in self.plugins.items():
            # note(), not subTest: hypothesis warns about subTest per example
            note(f"plugin {name}")
            self.checkDecision(name, request, plugin.checkHandshake(request))
        good = jwt.encode({"sub": "u1", "exp": NOW + 60}, SECRET, algorithm="HS256")
        valid = makeHandshakeRequest(params={"token": good})
        self.assertEqual(self.plugins["token"].checkHandshake(valid).identity.uid, "u1")

    @fuzz
    @given(
        st.one_of(
            st.binary(max_size=60),
            mutated(st.just(signFirstPacket(SECRET.encode(), "u1", NOW + 60))),
            st.builds(
                lambda uid, expires, sig: dumps({"uid": uid, "expires": expires, "sig": sig}),
                st.one_of(fieldText, values),
                st.one_of(digits, values),
                st.one_of(hex40, values),
            ).flatmap(lambda text: mutated(st.just(text))),
        ).map(lambda p: p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass")),
        st.booleans(),
    )
    def test_firstPacket(self, payload: bytes, isBinary: bool) -> None:
        """
        Both forms of C{uid-first-packet} decide every first message, and a
        valid signed packet is still accepted after.
        """
        request = makeHandshakeRequest()
        for name in ("uid-first-packet", "uid-first-packet hmac"):
            plugin = self.plugins[name]
            self.checkDecision(name, request, plugin.checkFirstMessage(request, payload, isBinary))
        good = signFirstPacket(SECRET.encode(), "u1", NOW + 60).encode()
        decision = self.plugins["uid-first-packet hmac"].checkFirstMessage(request, good, False)
        self.assertEqual(decision.identity.uid, "u1")
