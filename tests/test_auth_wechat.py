"""
Tests for L{realtime.auth.wechat}: values in, values out, on a L{Clock}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.auth.wechat import (
    NonceCache,
    VerifiedCredentials,
    WeChatAuthenticator,
    WeChatAuthenticatorFactory,
    checkSignature,
    computeSignature,
    parseSubprotocol,
    signingText,
)
from realtime.interfaces import IFirstMessageAuthenticator, IWarnings
from realtime.testing import AuthenticationAttempt, makeHandshakeRequest, verifyPlugin
from realtime.values import Accept, Deny, Identity
from realtime.values import HandshakeRequest as Request

TOKEN = "mini-program-token-0123456789"
NOW = 1_700_000_000
NONCE = "n0nce0123456789ab"
Fields = dict[str, str]


def request(params: Fields | None = None, headers: Fields | None = None, protocols: tuple[str, ...] = ()) -> Request:
    """
    A handshake as the server copies it: one value per query parameter.
    """
    return makeHandshakeRequest("/ws", params=params, headers=headers, protocols=protocols)


def fields(
    uid: str = "bob", timestamp: int = NOW, nonce: str = NONCE, token: str = TOKEN, mode: str = "wx1"
) -> dict[str, str]:
    """
    A correctly signed set of fields (the default mode unless C{mode}).
    """
    ts = str(timestamp)
    return {"uid": uid, "timestamp": ts, "nonce": nonce, "signature": computeSignature(token, ts, nonce, uid, mode)}


def full(f: dict[str, str]) -> str:
    """
    The subprotocol form carrying all four fields.
    """
    return f"wx.{f['uid']}.{f['timestamp']}.{f['nonce']}.{f['signature']}"


def sha1(data: bytes) -> str:
    """
    Lower-case hex SHA-1, for literal expectations.
    """
    return hashlib.sha1(data).hexdigest()


def signed(authenticator: WeChatAuthenticator, **fieldArgs: Any) -> object:
    """
    The decision on L{fields} sent as query parameters.
    """
    return authenticator.checkHandshake(request(params=fields(**fieldArgs)))


class WeChatTestCase(SynchronousTestCase):
    """
    Shared set-up: a clock that reads L{NOW}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def build(self, **options: str) -> WeChatAuthenticator:
        """
        Build through the plugin, as the server does.
        """
        return WeChatAuthenticatorFactory().buildAuthenticator({"token": TOKEN, **options}, self.clock)

    def assertDenied(self, decision: object, reason: str) -> None:
        """
        C{decision} refuses the handshake with 401 and exactly C{reason}.
        """
        self.assertEqual(decision, Deny(401, reason))

    def assertAccepted(self, decision: object, uid: str = "bob", subprotocol: str | None = None) -> None:
        """
        C{decision} accepts C{uid}, echoing C{subprotocol}.
        """
        self.assertEqual(decision, Accept(Identity(uid=uid, subprotocol=subprotocol)))


class SignatureTests(SynchronousTestCase):
    """
    The pure functions, pinned to literal inputs so a change cannot go unnoticed.
    """

    def check(self, now: float = NOW, **overrides: str | None) -> VerifiedCredentials:
        """
        L{checkSignature} on L{fields} with C{overrides} (not re-signed).
        """
        given: dict[str, str | None] = {**fields(), **overrides}
        return checkSignature(TOKEN, uid=given["uid"], timestamp=given["timestamp"], nonce=given["nonce"],
                              signature=given["signature"], now=now)  # fmt: skip

    def assertReason(self, reason: str, now: float = NOW, **overrides: str | None) -> None:
        """
        L{check} raises C{ValueError(reason)}.
        """
        self.assertEqual(str(self.assertRaises(ValueError, self.check, now, **overrides)), reason)

    def test_valid(self) -> None:
        """
        wx1 (the default): SHA-1 of "wx1:token:timestamp:nonce:uid" as UTF-8, lower hex, colons in the uid
        kept.  Legacy-sorted: the four fields sorted as strings ("10" < "9", as PHP's SORT_STRING),
        concatenated.  Seed: sha1(token . timestamp), ignoring nonce and uid.  Unknown modes are errors.
        L{checkSignature} accepts it with normalised values, in either hex case, at the window's edges.
        """
        self.assertEqual(signingText("tok", "1700000000", NONCE, "a:b"), f"wx1:tok:1700000000:{NONCE}:a:b")
        self.assertEqual(computeSignature("tok", "1700000000", NONCE, "bob"), sha1(f"wx1:tok:1700000000:{NONCE}:bob".encode()))
        self.assertEqual(computeSignature("tok", "1", NONCE, "用户"), sha1(f"wx1:tok:1:{NONCE}:用户".encode()))
        self.assertEqual(computeSignature("tok", "1700000000", "abc", "bob", "legacy-sorted"), sha1(b"1700000000abcbobtok"))
        self.assertEqual(computeSignature("x", "10", "9", "a", "legacy-sorted"), sha1(b"109ax"))
        self.assertEqual(computeSignature("tok", "1700000000", mode="seed"), sha1(b"tok1700000000"))
        self.assertEqual(computeSignature("tok", "1700000000", "n", "anyone", mode="seed"), sha1(b"tok1700000000"))
        self.assertRaises(ValueError, computeSignature, "tok", "1", "n", "u", "md5")
        signature = fields()["signature"]
        self.assertEqual(self.check(), VerifiedCredentials("bob", NOW, NONCE, signature))
        self.assertEqual(self.check(signature=signature.upper()).signature, signature)
        self.assertEqual([self.check(now=NOW + 300).uid, self.check(now=NOW - 300).uid], ["bob", "bob"])

    def test_refused(self) -> None:
        """
        Each absent or empty field is named; a wrong signature, any field changed after signing, and one more
        second than the window are refused.
        """
        for name in ("signature", "timestamp", "nonce", "uid"):
            self.assertReason(f"missing {name}", **{name: None})
            self.assertReason(f"missing {name}", **{name: ""})
        for change in ({"signature": "0" * 40}, {"uid": "mallory"}, {"nonce": "othernonce0123456"}, {"timestamp": str(NOW + 1)}):
            self.assertReason("bad signature", **change)
        self.assertReason("timestamp outside the 300 s window", now=NOW + 301)
        self.assertReason("timestamp outside the 300 s window", now=NOW - 301)


class PluginTests(WeChatTestCase):
    """
    The factory and what it builds provide their interfaces; options are checked.
    """

    def test_interfaces(self) -> None:
        """
        The factory is a plugin and an authenticator factory; the product an authenticator, with the
        documented defaults; the handshake always decides, never a first message.
        """
        factory = WeChatAuthenticatorFactory()
        authenticator = verifyPlugin(factory, {"token": TOKEN}, self.clock)
        self.assertEqual((factory.name, authenticator.mode, authenticator.window), ("wechat", "wx1", 300.0))
        self.assertEqual(authenticator.nonces.maxEntries, 100000)
        self.assertFalse(IFirstMessageAuthenticator.providedBy(authenticator))
        attempt = AuthenticationAttempt(authenticator, request(params=fields()), self.clock)
        attempt.send("bob")
        self.assertEqual((attempt.state, attempt.identity.uid, attempt.routed), ("open", "bob", [(b"bob", False)]))
        self.assertTrue(IWarnings.providedBy(authenticator))
        self.assertEqual(list(authenticator.warnings()), [])

    def test_badOptions(self) -> None:
        """
        No token, each bad value, and a misspelt option are refused naming the option.
        """
        for given in ({}, {"token": ""}):
            e = self.assertRaises(ValueError, WeChatAuthenticatorFactory().buildAuthenticator, given, self.clock)
            self.assertEqual(str(e), "wechat: option 'token' is required")
        bad = [("window", "abc"), ("window", "0"), ("max-nonces", "0"), ("max-nonces", "1.5"), ("mode", "md5"),
               ("mode", "sorted")]  # fmt: skip
        for name, value in bad:
            self.assertIn(f"wechat: option {name!r} ", str(self.assertRaises(ValueError, self.build, **{name: value})))
        e = self.assertRaises(ValueError, self.build, window="abc")
        self.assertEqual(str(e), "wechat: option 'window' must be a number, not 'abc'")
        self.assertIn("wechat: unknown option 'windw'", str(self.assertRaises(ValueError, self.build, windw="60")))

    def test_warnings(self) -> None:
        """
        wx1 with a long token is quiet (above); the legacy modes and short tokens are not.
        """
        [warning] = self.build(mode="seed").warnings()
        self.assertIn("mode=seed", warning)
        self.assertIn("ANY uid", warning)
        [warning] = self.build(mode="legacy-sorted").warnings()
        self.assertIn("mode=legacy-sorted", warning)
        self.assertIn("ANOTHER uid", warning)
        [warning] = WeChatAuthenticatorFactory().buildAuthenticator({"token": "abc"}, self.clock).warnings()
        self.assertIn("shorter than 16 characters", warning)


class SourceTests(WeChatTestCase):
    """
    The fields may come from the query, the headers or a subprotocol.
    """

    def test_queryOrHeaders(self) -> None:
        """
        All four as query parameters, as (lower-cased) headers, or split between them; the query wins over
        headers; no subprotocol is chosen, even if unrelated ones are offered.
        """
        f = fields()
        self.assertAccepted(self.build().checkHandshake(request(params=f, protocols=("chat", "mqtt"))))
        self.assertAccepted(self.build().checkHandshake(request(headers=f)))
        query, headers = {"uid": "bob", "nonce": f["nonce"]}, {"timestamp": f["timestamp"], "signature": f["signature"]}
        self.assertAccepted(self.build().checkHandshake(request(query, headers)))
        self.assertAccepted(self.build().checkHandshake(request(params=f, headers=fields(uid="mallory"))))

    def test_signatureSubprotocolEchoed(self) -> None:
        """
        A bare 40-hex subprotocol is the signature, used over the query's; exactly the offered value is echoed.
        """
        f = fields()
        signature = f["signature"].upper()
        f["signature"] = "0" * 40
        decision = self.build().checkHandshake(request(params=f, protocols=("chat", signature)))
        self.assertAccepted(decision, subprotocol=signature)

    def test_fullSubprotocol(self) -> None:
        """
        wx.<uid>.<timestamp>.<nonce>.<signature>, with dots in the uid, carries everything, overrides the
        query, and is echoed.
        """
        offered, other = full(fields(uid="user.42.cn")), fields(uid="mallory", nonce="x")
        self.assertAccepted(self.build().checkHandshake(request(other, {}, ("chat", offered))), "user.42.cn", offered)

    def test_malformedSubprotocol(self) -> None:
        """
        A wx. subprotocol of the wrong shape is reported as such; a dotted nonce shifts the split; only the
        two forms are ours.
        """
        decision = self.build().checkHandshake(request(params=fields(), protocols=("wx.bob.123",)))
        self.assertDenied(decision, "subprotocol must be wx.<uid>.<timestamp>.<nonce>.<signature>")
        decision = self.build().checkHandshake(request(protocols=(full(fields(nonce="a.b")),)))
        self.assertDenied(decision, "timestamp must be a Unix time in whole seconds")
        self.assertIsNone(parseSubprotocol("chat"))
        self.assertIsNone(parseSubprotocol("a" * 39))
        self.assertEqual(parseSubprotocol("f" * 40).signature, "f" * 40)
        parsed = parseSubprotocol("wx.a.b.1.n.sig")
        self.assertEqual((parsed.uid, parsed.timestamp, parsed.nonce, parsed.signature), ("a.b", "1", "n", "sig"))


class RefusalTests(WeChatTestCase):
    """
    Every refusal is a 401 with a precise reason.
    """

    def deny(self, reason: str, **overrides: str) -> None:
        """
        The signed L{fields} with C{overrides} (not re-signed) are refused for C{reason}.
        """
        self.assertDenied(self.build().checkHandshake(request(params={**fields(), **overrides})), reason)

    def test_signature(self) -> None:
        """
        Nothing at all (the signature is missing first), no timestamp, signed with another token, a tampered
        uid, or not 40 hex digits.
        """
        self.assertDenied(self.build().checkHandshake(request()), "missing signature")
        self.deny("missing timestamp", timestamp="")
        self.deny("bad signature", signature=fields(token="another-token-0123456789")["signature"])
        self.deny("bad signature", uid="alice")
        self.deny("malformed signature: expected 40 hex digits", signature="a" * 39)
        self.deny("malformed signature: expected 40 hex digits", signature="g" * 40)

    def test_staleTimestamp(self) -> None:
        """
        Correctly signed, but too old or too far ahead (or in milliseconds); the configured window is named.
        """
        for timestamp in (NOW - 301, NOW + 301, NOW * 1000):
            self.assertDenied(signed(self.build(), timestamp=timestamp), "timestamp outside the 300 s window")
        authenticator = self.build(window="60")
        self.assertAccepted(signed(authenticator, timestamp=NOW - 60))
        self.assertDenied(signed(authenticator, timestamp=NOW - 61), "timestamp outside the 60 s window")

    def test_malformed(self) -> None:
        """
        Timestamps of ASCII digits only, of a sane length; nonces short and printable; uids by the rules every
        plugin shares.
        """
        for bad in ("12a", "-5", "+1700000000", "1.5", "1e9", "\u0661\u0662", "1" * 17):
            self.deny("timestamp must be a Unix time in whole seconds", timestamp=bad)
        for bad in ("n" * 15, "n" * 33, "n0nce-0123456789ab", "n0nce.0123456789ab", "n0nce:0123456789ab",
                    "n\u00f6nce0123456789ab", "n0nce 0123456789ab", "\uff4e" * 16, "n0nce0123456789a\x00"):  # fmt: skip
            self.deny("nonce must be 16 to 32 ASCII letters and digits", nonce=bad)
        self.assertAccepted(signed(self.build(), nonce="A" * 16))
        self.assertAccepted(signed(self.build(), nonce="z9" * 16))
        self.deny("uid contains control characters", uid="bo\x07b")
        self.deny("uid longer than 128 characters", uid="u" * 129)
        self.deny("uid begins or ends with whitespace", uid=" bob")
        self.deny("uid contains U+202E (RIGHT-TO-LEFT OVERRIDE), which is invisible or reorders text", uid="bob\u202e")


class ReplayTests(WeChatTestCase):
    """
    A nonce is good once, for any uid, while its timestamp is acceptable.
    """

    def test_replayRefused(self) -> None:
        """
        The same request twice, even with the fields moved into a subprotocol, re-signed with a new
        timestamp, or signed for another uid.
        """
        authenticator = self.build()
        self.assertAccepted(signed(authenticator))
        self.assertDenied(signed(authenticator), "nonce already used")
        self.assertDenied(authenticator.checkHandshake(request(protocols=(full(fields()),))), "nonce already used")
        self.clock.advance(10)
        self.assertDenied(signed(authenticator, timestamp=NOW + 10), "nonce already used")
        self.assertDenied(signed(authenticator, uid="alice"), "nonce already used")

    def test_refusalDoesNotSpendNonce(self) -> None:
        """
        A forged request cannot burn a nonce its owner is about to use.
        """
        authenticator = self.build()
        self.assertDenied(authenticator.checkHandshake(request({**fields(), "signature": "0" * 40})), "bad signature")
        self.assertEqual([signed(authenticator).identity.uid, len(authenticator.nonces)], ["bob", 1])

    def test_nonceFreeAfterWindow(self) -> None:
        """
        Once the first timestamp has left the window the nonce may be signed again, and the old entry is gone;
        a timestamp ahead of the clock stays acceptable for longer, so it is remembered longer.
        """
        authenticator = self.build()
        self.assertAccepted(signed(authenticator))
        self.clock.advance(300)
        self.assertDenied(signed(authenticator, timestamp=NOW + 300), "nonce already used")
        self.clock.advance(1)
        self.assertAccepted(signed(authenticator, timestamp=NOW + 301))
        self.assertEqual(len(authenticator.nonces), 1)
        self.assertAccepted(signed(authenticator, timestamp=NOW + 500, nonce="ahead0123456789ab"))
        self.clock.advance(450)
        self.assertDenied(signed(authenticator, timestamp=NOW + 500, nonce="ahead0123456789ab"), "nonce already used")

    def test_bounded(self) -> None:
        """
        Beyond max-nonces the oldest is evicted (new users are never refused for it), and expired entries
        leave without any lookup of their own.
        """
        authenticator = self.build(**{"max-nonces": "3"})
        for i in range(5):
            self.assertAccepted(signed(authenticator, uid=f"u{i}", nonce=f"{NONCE}{i}"), f"u{i}")
        self.assertEqual((len(authenticator.nonces), authenticator.nonces.evicted), (3, 2))
        self.assertDenied(signed(authenticator, uid="u4", nonce=f"{NONCE}4"), "nonce already used")
        authenticator = self.build()
        for i in range(50):
            signed(authenticator, uid=f"u{i}", nonce=f"{NONCE}{i}")
        self.assertEqual(len(authenticator.nonces), 50)
        self.clock.advance(301)
        self.assertAccepted(signed(authenticator, timestamp=NOW + 301))
        self.assertEqual(len(authenticator.nonces), 1)


class NonceCacheTests(SynchronousTestCase):
    """
    The replay memory on its own.
    """

    def test_claim(self) -> None:
        """
        A key is free, then used until it expires, then free again; a refused replay does not extend its life;
        an expired key behind a longer-lived older one is free.  Insertion order decides eviction.
        """
        cache = NonceCache(10)
        self.assertEqual([cache.claim("k", 100, now=0), cache.claim("k", 10_000, now=100)], [True, False])
        self.assertEqual([cache.claim("k", 300, now=101), cache.claim("k", 300, now=250)], [True, False])
        self.assertEqual([cache.claim("short", 260, now=250), cache.claim("short", 400, now=261)], [True, True])
        cache = NonceCache(2)
        self.assertEqual([cache.claim(key, 100, now=0) for key in "abc"], [True] * 3)
        self.assertEqual((len(cache), cache.evicted), (2, 1))
        self.assertEqual([cache.claim("a", 100, now=0), cache.claim("c", 100, now=0)], [True, False])


class SeedModeTests(WeChatTestCase):
    """
    The PHP seed's sha1(token . timestamp), for compatibility.
    """

    def seedRequest(self, timestamp: int = NOW, signedTimestamp: int | None = None) -> Request:
        """
        The seed's shape: the signature as the subprotocol, the uid and timestamp in the query.
        """
        signature = computeSignature(TOKEN, str(signedTimestamp or timestamp), mode="seed")
        return request({"uid": "bob", "timestamp": str(timestamp)}, protocols=(signature,))

    def test_seed(self) -> None:
        """
        No nonce needed; the signature subprotocol is echoed; it is spent per uid.  A signature over another
        timestamp, or a stale one, is refused.  The default mode refuses this form.
        """
        authenticator, r = self.build(mode="seed"), self.seedRequest()
        self.assertAccepted(authenticator.checkHandshake(r), subprotocol=r.protocols[0])
        self.assertDenied(authenticator.checkHandshake(r), "signature already used")
        self.assertDenied(authenticator.checkHandshake(self.seedRequest(NOW, NOW + 1)), "bad signature")
        self.assertDenied(
            authenticator.checkHandshake(self.seedRequest(NOW - 301)), "timestamp outside the 300 s window"
        )
        self.assertDenied(self.build().checkHandshake(r), "missing nonce")


class FieldBindingTests(WeChatTestCase):
    """
    A signature binds each value to its field: moving the boundary between
    the uid and the nonce (issue 10.3) gives another uid nothing.
    """

    #: the issue's ticket, its nonce made long enough for the default mode; a token that sorts after both,
    #: so that they are neighbours in the sorted fields
    UID, NONCE, TOKEN = "adminx", "q7f3k9q7f3k9q7f3", "wechat-example-token-0123456789"

    def attempt(self, authenticator: WeChatAuthenticator, uid: str, nonce: str, signature: str) -> object:
        """
        The decision on C{uid} and C{nonce} sent with another request's C{signature}.
        """
        given = {"uid": uid, "timestamp": str(NOW), "nonce": nonce, "signature": signature}
        return authenticator.checkHandshake(request(params=given))

    def build(self, **options: str) -> WeChatAuthenticator:
        """
        Built with L{TOKEN}.
        """
        return super().build(token=self.TOKEN, **options)

    def test_resplitRefused(self) -> None:
        """
        The issue's two re-splits, and every other cut of the uid and nonce run together (either way round),
        are refused before and after the ticket itself is used; only the ticket as issued is accepted.
        """
        signature = fields(uid=self.UID, nonce=self.NONCE, token=self.TOKEN)["signature"]
        joined = self.UID + self.NONCE
        resplits = [("a", "dminx" + self.NONCE), (self.NONCE, self.UID)]
        resplits += [(joined[:i], joined[i:]) for i in range(1, len(joined))]
        resplits += [(joined[i:], joined[:i]) for i in range(1, len(joined))]
        resplits.remove((self.UID, self.NONCE))
        authenticator = self.build()

        def accepted() -> list[tuple[str, str]]:
            return [split for split in resplits if isinstance(self.attempt(authenticator, *split, signature), Accept)]

        self.assertEqual(accepted(), [])
        self.assertAccepted(self.attempt(authenticator, self.UID, self.NONCE, signature), self.UID)
        self.assertEqual(accepted(), [])

    def test_nonceSpentForEveryUid(self) -> None:
        """
        A nonce is good once, whoever it was signed for: the same nonce correctly signed for another uid is
        refused while the first is in its window.
        """
        authenticator = self.build()
        self.assertAccepted(signed(authenticator, uid="alice", nonce=self.NONCE, token=self.TOKEN), "alice")
        self.assertDenied(signed(authenticator, uid="bob", nonce=self.NONCE, token=self.TOKEN), "nonce already used")


class LegacySortedTests(WeChatTestCase):
    """
    The former default, kept behind an explicit option for backends not yet moved to wx1.
    """

    def test_legacySorted(self) -> None:
        """
        Tickets signed the old way, with the old nonces, pass; the same signature is good once, so a ticket
        seen in use cannot come back re-split; the plain mode=sorted of old configurations is refused with
        what to do.
        """
        token = FieldBindingTests.TOKEN
        authenticator = self.build(mode="legacy-sorted", token=token)
        old = fields(uid="adminx", nonce="q7f3k9", token=token, mode="legacy-sorted")
        resplit = {**old, "uid": "a", "nonce": "dminxq7f3k9"}
        self.assertAccepted(authenticator.checkHandshake(request(params=old)), "adminx")
        self.assertDenied(authenticator.checkHandshake(request(params=old)), "signature already used")
        self.assertDenied(authenticator.checkHandshake(request(params=resplit)), "signature already used")
        self.assertAccepted(signed(authenticator, nonce="~!" * 32, token=token, mode="legacy-sorted"))
        e = self.assertRaises(ValueError, self.build, mode="sorted")
        self.assertIn("wechat: option 'mode' sorted is now legacy-sorted and no longer the default", str(e))
        self.assertIn("mode=legacy-sorted", str(e))
