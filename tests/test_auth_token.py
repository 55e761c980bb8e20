"""
Tests for L{realtime.auth.token}: real JWTs, a L{Clock} for their times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
from typing import Any

import jwt
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.auth.token import TokenAuthenticator, TokenAuthenticatorFactory, checkTimes
from realtime.interfaces import IFirstMessageAuthenticator, IWarnings
from realtime.testing import AuthenticationAttempt, makeHandshakeRequest, verifyPlugin
from realtime.values import Accept, Deny, HandshakeRequest

SECRET = "s" * 32
NOW = 1_700_000_000


def sign(claims: dict[str, Any], secret: str | None = SECRET, algorithm: str = "HS256", *, exp: bool = True) -> str:
    """
    A JWT as a backend would issue it: with an C{exp} an hour ahead unless
    C{claims} has its own, or C{exp} is false.
    """
    return jwt.encode({"exp": NOW + 3600, **claims} if exp else claims, secret, algorithm=algorithm)


def forge(header: dict[str, Any], claims: dict[str, Any], secret: str = SECRET) -> str:
    """
    A token with any header, HMAC-SHA256-signed with C{secret} whatever the
    header claims: what an attacker who knows the public key or hopes for
    "none" would send.
    """

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    signingInput = encode(json.dumps(header).encode()) + "." + encode(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signingInput.encode(), hashlib.sha256).digest()
    return signingInput + "." + encode(signature)


def request(token: str | None = None, authorization: str | None = None) -> HandshakeRequest:
    """
    A handshake with the token in the query and/or an Authorization header.
    """
    return makeHandshakeRequest(
        "/ws",
        params={"token": token} if token is not None else None,
        headers={"Authorization": authorization} if authorization is not None else None,
    )


class TokenTestCase(SynchronousTestCase):
    """
    Shared set-up: a clock at L{NOW}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def build(self, **options: str) -> TokenAuthenticator:
        """
        Build through the plugin, as the server does.
        """
        return TokenAuthenticatorFactory().buildAuthenticator({"secret": SECRET, **options}, self.clock)

    def check(self, token: str, **options: str) -> object:
        """
        The decision on C{token} given in the query string.
        """
        return self.build(**options).checkHandshake(request(token))

    def assertDenied(self, decision: object, reason: str) -> None:
        """
        A 401 with exactly C{reason}.
        """
        self.assertEqual(decision, Deny(401, reason))


class PluginTests(TokenTestCase):
    """
    Interfaces and options.
    """

    def test_interfaces(self) -> None:
        """
        The factory is a plugin and an authenticator factory; the product an
        authenticator that announces warnings and decides at the handshake.
        """
        factory = TokenAuthenticatorFactory()
        built = verifyPlugin(factory, {"secret": SECRET}, self.clock)
        self.assertTrue(IWarnings.providedBy(built))
        self.assertFalse(IFirstMessageAuthenticator.providedBy(built))
        self.assertEqual(factory.name, "token")

    def test_secretRequired(self) -> None:
        """
        No secret, no server.
        """
        e = self.assertRaises(ValueError, TokenAuthenticatorFactory().buildAuthenticator, {}, self.clock)
        self.assertEqual(str(e), "token: option 'secret' is required")

    def test_badValues(self) -> None:
        """
        Bad values are refused naming their option.
        """
        for name, value in (("leeway", "abc"), ("leeway", "-1"), ("channels-claim", "")):
            e = self.assertRaises(ValueError, self.build, **{name: value})
            self.assertIn(f"token: option {name!r} ", str(e))

    def test_asymmetricSecretRefused(self) -> None:
        """
        A PEM public key is not an HMAC secret: that is the algorithm-confusion set-up.
        """
        pem = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"
        e = self.assertRaises(ValueError, TokenAuthenticatorFactory().buildAuthenticator, {"secret": pem}, self.clock)
        self.assertIn("token: option 'secret' is not usable as an HMAC key", str(e))

    def test_unknownOption(self) -> None:
        """
        A misspelt option is refused, not ignored.
        """
        e = self.assertRaises(ValueError, self.build, audiance="x")
        self.assertIn("token: unknown option 'audiance'", str(e))

    def test_warnings(self) -> None:
        """
        A 32-byte secret is quiet; a short one is not.
        """
        self.assertEqual(list(self.build().warnings()), [])
        short = TokenAuthenticatorFactory().buildAuthenticator({"secret": "hunter2"}, self.clock)
        [warning] = short.warnings()
        self.assertIn("the secret is 7 bytes", warning)

    def test_requireExp(self) -> None:
        """
        C{require-exp} is a flag, on by default; turned off it is warned about at startup.
        """
        self.assertEqual(self.build().requireExp, True)
        self.assertEqual(self.build(**{"require-exp": "no"}).requireExp, False)
        e = self.assertRaises(ValueError, self.build, **{"require-exp": "maybe"})
        self.assertEqual(str(e), "token: option 'require-exp' must be true or false, not 'maybe'")
        [warning] = self.build(**{"require-exp": "no"}).warnings()
        self.assertIn("require-exp=no", warning)
        self.assertIn("FOREVER", warning)

    def test_firstMessageNeverAccepted(self) -> None:
        """
        The handshake decides: the plugin has no first-message hook, so a
        connection never waits for one, and its first message is routed.
        """
        self.assertFalse(IFirstMessageAuthenticator.providedBy(self.build()))
        attempt = AuthenticationAttempt(self.build(), request(sign({"sub": "u"})), self.clock)
        attempt.send("x")
        self.assertEqual((attempt.state, attempt.identity.uid, attempt.routed), ("open", "u", [(b"x", False)]))
        self.assertEqual(AuthenticationAttempt(self.build(), request(), self.clock).state, "refused")


class AcceptTests(TokenTestCase):
    """
    Valid tokens, from either place.
    """

    def test_query(self) -> None:
        """
        The uid is sub, the channels the claim's list, and every claim is kept.
        """
        decision = self.check(sign({"sub": "bob", "channels": ["news", "room.*"], "exp": NOW + 60, "role": "x"}))
        self.assertIsInstance(decision, Accept)
        identity = decision.identity
        self.assertEqual(identity.uid, "bob")
        self.assertEqual(identity.channels, frozenset({"news", "room.*"}))
        self.assertEqual(
            dict(identity.claims), {"sub": "bob", "channels": ["news", "room.*"], "exp": NOW + 60, "role": "x"}
        )
        self.assertIsNone(identity.subprotocol)

    def test_claimsReadOnly(self) -> None:
        """
        A plugin downstream cannot rewrite what the token said.
        """
        identity = self.check(sign({"sub": "bob"})).identity
        self.assertRaises(TypeError, operator.setitem, identity.claims, "sub", "mallory")

    def test_noChannels(self) -> None:
        """
        Without the claim the connection may use no channels.
        """
        self.assertEqual(self.check(sign({"sub": "bob"})).identity.channels, frozenset())

    def test_channelsClaimOption(self) -> None:
        """
        The claim's name is configurable.
        """
        token = sign({"sub": "bob", "rooms": ["a"], "channels": ["b"]})
        self.assertEqual(self.check(token, **{"channels-claim": "rooms"}).identity.channels, frozenset({"a"}))

    def test_bearerHeader(self) -> None:
        """
        Authorization: Bearer, the scheme in any case.
        """
        token = sign({"sub": "bob"})
        for scheme in ("Bearer", "bearer", "BEARER"):
            decision = self.build().checkHandshake(request(authorization=f"{scheme} {token}"))
            self.assertEqual(decision.identity.uid, "bob", scheme)

    def test_headerWins(self) -> None:
        """
        With both, the header is used.
        """
        decision = self.build().checkHandshake(
            request(token=sign({"sub": "mallory"}), authorization="Bearer " + sign({"sub": "bob"}))
        )
        self.assertEqual(decision.identity.uid, "bob")

    def test_otherSchemeFallsBackToQuery(self) -> None:
        """
        A proxy's Basic credentials do not hide the query token.
        """
        decision = self.build().checkHandshake(request(token=sign({"sub": "bob"}), authorization="Basic eDp5"))
        self.assertEqual(decision.identity.uid, "bob")

    def test_beforeExpiry(self) -> None:
        """
        One second before exp is still fine.
        """
        token = sign({"sub": "bob", "exp": NOW + 60})
        self.clock.advance(59)
        self.assertIsInstance(self.check(token), Accept)


class RefusalTests(TokenTestCase):
    """
    Every refusal is a 401 with a precise reason.
    """

    def test_missing(self) -> None:
        """
        No token at all, or an Authorization header of another scheme only.
        """
        self.assertDenied(self.build().checkHandshake(request()), "missing token")
        self.assertDenied(self.build().checkHandshake(request(token="")), "missing token")
        self.assertDenied(
            self.build().checkHandshake(request(authorization="Bearer ")),
            "authorization header must be 'Bearer <token>'",
        )
        self.assertDenied(
            self.build().checkHandshake(request(authorization="Basic eDp5")),
            "authorization header must be 'Bearer <token>'",
        )

    def test_expired(self) -> None:
        """
        At exp and after, by the reactor's clock.
        """
        token = sign({"sub": "bob", "exp": NOW + 60})
        authenticator = self.build()
        self.assertIsInstance(authenticator.checkHandshake(request(token)), Accept)
        self.clock.advance(60)
        self.assertDenied(authenticator.checkHandshake(request(token)), "token expired")
        self.clock.advance(3600)
        self.assertDenied(authenticator.checkHandshake(request(token)), "token expired")

    def test_noExp(self) -> None:
        """
        A token without exp is refused by default, as README promises that expiry is enforced; with
        require-exp=no it is accepted, and an exp it does carry is still enforced.
        """
        token = sign({"sub": "bob"}, exp=False)
        self.assertDenied(self.check(token), "token has no exp")
        self.assertDenied(self.check(sign({"sub": "bob", "exp": None}, exp=False)), "token has no exp")
        self.assertIsInstance(self.check(token, **{"require-exp": "no"}), Accept)
        self.assertDenied(self.check(sign({"sub": "bob", "exp": NOW}), **{"require-exp": "no"}), "token expired")

    def test_leeway(self) -> None:
        """
        Leeway stretches exp by that many seconds, and no more.
        """
        token = sign({"sub": "bob", "exp": NOW})
        authenticator = self.build(leeway="30")
        self.clock.advance(29)
        self.assertIsInstance(authenticator.checkHandshake(request(token)), Accept)
        self.clock.advance(1)
        self.assertDenied(authenticator.checkHandshake(request(token)), "token expired")

    def test_notYetValid(self) -> None:
        """
        nbf and iat in the future.
        """
        self.assertDenied(self.check(sign({"sub": "bob", "nbf": NOW + 10})), "token not yet valid")
        self.assertDenied(self.check(sign({"sub": "bob", "iat": NOW + 10})), "token issued in the future")
        self.assertIsInstance(self.check(sign({"sub": "bob", "nbf": NOW + 10}), leeway="10"), Accept)
        self.assertIsInstance(self.check(sign({"sub": "bob", "nbf": NOW, "iat": NOW})), Accept)

    def test_badTimeClaims(self) -> None:
        """
        Time claims that are not numbers.
        """
        self.assertDenied(self.check(sign({"sub": "bob", "exp": "tomorrow"})), "token exp must be a number")
        self.assertDenied(self.check(sign({"sub": "bob", "nbf": True})), "token nbf must be a number")

    def test_checkTimes(self) -> None:
        """
        The pure check uses only the C{now} it is given.
        """
        checkTimes({"exp": 100}, now=99)
        self.assertRaises(ValueError, checkTimes, {"exp": 100}, now=100)
        checkTimes({"exp": 100}, now=104, leeway=5)

    def test_wrongSecret(self) -> None:
        """
        Signed with another key.
        """
        self.assertDenied(self.check(sign({"sub": "bob"}, secret="t" * 32)), "bad token signature")

    def test_algNone(self) -> None:
        """
        An unsigned token is refused, signature or not.
        """
        self.assertDenied(
            self.check(sign({"sub": "bob"}, secret=None, algorithm="none")), "token algorithm must be HS256"
        )
        self.assertDenied(
            self.check(forge({"alg": "none", "typ": "JWT"}, {"sub": "bob"})), "token algorithm must be HS256"
        )

    def test_otherAlgorithms(self) -> None:
        """
        HS512 with the right secret, or an RS256 header, is refused: only HS256 is taken.
        """
        self.assertDenied(
            self.check(sign({"sub": "bob"}, secret=SECRET * 2, algorithm="HS512")), "token algorithm must be HS256"
        )
        for alg in ("RS256", "ES256", "PS256"):
            self.assertDenied(
                self.check(forge({"alg": alg, "typ": "JWT"}, {"sub": "bob"})), "token algorithm must be HS256"
            )

    def test_forgeIsFaithful(self) -> None:
        """
        The forging helper makes valid tokens when the header says HS256, so the
        refusals above are about the algorithm alone.
        """
        self.assertIsInstance(self.check(forge({"alg": "HS256", "typ": "JWT"}, {"sub": "bob", "exp": NOW + 60})), Accept)

    def test_malformed(self) -> None:
        """
        Not a JWT at all, or absurdly long.
        """
        for junk in ("abc", "a.b.c", "...."):
            self.assertDenied(self.check(junk), "malformed token")
        self.assertDenied(self.check("a" * 8193), "token too long")

    def test_sub(self) -> None:
        """
        sub is required, a string, and a valid uid.
        """
        self.assertDenied(self.check(sign({"name": "bob"})), "token has no sub")
        self.assertDenied(self.check(sign({"sub": ""})), "token has no sub")
        self.assertDenied(self.check(sign({"sub": 42})), "token sub must be a string")
        self.assertDenied(self.check(sign({"sub": "bo\nb"})), "token sub: uid contains control characters")
        self.assertDenied(self.check(sign({"sub": " bob"})), "token sub: uid begins or ends with whitespace")

    def test_badChannels(self) -> None:
        """
        The channels claim must be a list of names.
        """
        for bad in ("news", ["news", 3], {"news": True}, [""]):
            self.assertDenied(
                self.check(sign({"sub": "bob", "channels": bad})),
                "token claim 'channels' must be a list of channel names",
            )

    def test_audience(self) -> None:
        """
        With audience set, aud must name it; without, a token with an aud is refused.
        """
        self.assertIsInstance(self.check(sign({"sub": "bob", "aud": "push"}), audience="push"), Accept)
        self.assertIsInstance(self.check(sign({"sub": "bob", "aud": ["a", "push"]}), audience="push"), Accept)
        self.assertDenied(self.check(sign({"sub": "bob", "aud": "other"}), audience="push"), "token audience mismatch")
        self.assertDenied(self.check(sign({"sub": "bob"}), audience="push"), "token has no aud")
        self.assertDenied(self.check(sign({"sub": "bob", "aud": "push"})), "token audience mismatch")

    def test_issuer(self) -> None:
        """
        With issuer set, iss must equal it; without, iss is not checked.
        """
        self.assertIsInstance(self.check(sign({"sub": "bob", "iss": "backend"}), issuer="backend"), Accept)
        self.assertDenied(self.check(sign({"sub": "bob", "iss": "evil"}), issuer="backend"), "token issuer mismatch")
        self.assertDenied(self.check(sign({"sub": "bob"}), issuer="backend"), "token has no iss")
        self.assertIsInstance(self.check(sign({"sub": "bob", "iss": "anyone"})), Accept)
