"""
Tests for L{realtime.auth.firstpacket} and L{realtime.auth.anonymous}.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime import closecodes
from realtime.auth.anonymous import AnonymousAuthenticatorFactory
from realtime.auth.firstpacket import (
    FirstPacketAuthenticatorFactory,
    checkSignedPacket,
    parseUid,
    signFirstPacket,
)
from realtime.interfaces import IFirstMessageAuthenticator, IWarnings
from realtime.testing import AuthenticationAttempt, makeHandshakeRequest, verifyPlugin
from realtime.values import Accept, AwaitFirstMessage, Deny, Identity

REQUEST = makeHandshakeRequest()
SECRET = b"s3cret"


class ParseTests(SynchronousTestCase):
    """
    The pure checks.
    """

    def test_parseUid(self) -> None:
        """
        Whitespace around a uid is dropped; empty, overlong and control
        characters are refused.
        """
        self.assertEqual(parseUid(" uid1\n"), "uid1")
        self.assertEqual(parseUid("用户1"), "用户1")
        for bad, reason in [
            ("", "empty"),
            ("  ", "empty"),
            ("x" * 129, "longer"),
            ("a\x00b", "control"),
            ("a\tb", "control"),
            ("a\x1fb", "control"),
            ("a\x7fb", "control"),
        ]:
            e = self.assertRaises(ValueError, parseUid, bad)
            self.assertIn(reason, str(e))

    def test_signedRoundTrip(self) -> None:
        """
        What L{signFirstPacket} makes, L{checkSignedPacket} accepts until it
        expires; uids may contain colons.
        """
        packet = signFirstPacket(SECRET, "a:b", 1000)
        self.assertEqual(checkSignedPacket(SECRET, packet, 999.0), "a:b")
        self.assertEqual(checkSignedPacket(SECRET, packet, 1000.0), "a:b")
        e = self.assertRaises(ValueError, checkSignedPacket, SECRET, packet, 1000.5)
        self.assertEqual(str(e), "signature expired")

    def test_signedJson(self) -> None:
        """
        The JSON form carries the same three fields.
        """
        uid, expires, sig = signFirstPacket(SECRET, "u1", 2000).rsplit(":", 2)
        text = json.dumps({"uid": uid, "expires": int(expires), "sig": sig})
        self.assertEqual(checkSignedPacket(SECRET, text, 0), "u1")

    def test_signedRefusals(self) -> None:
        """
        A wrong key, a changed uid or expiry, and malformed packets are refused
        with a reason.
        """
        good = signFirstPacket(SECRET, "u1", 2000)
        uid, expires, sig = good.rsplit(":", 2)
        cases = [
            (signFirstPacket(b"other", "u1", 2000), "bad signature"),
            (f"u2:{expires}:{sig}", "bad signature"),
            (f"u1:2001:{sig}", "bad signature"),
            ("u1", "uid:expires:signature"),
            ("u1:soon:abc", "Unix time"),
            ('{"uid": "u1"}', "uid:expires:sig"),
            ('{"uid": 1, "expires": 2000, "sig": "x"}', "must be strings"),
            ('{"uid":' * 100_000, "uid:expires:sig"),
            ('{"uid": "u1", "expires": NaN, "sig": "x"}', "uid:expires:sig"),
            ('{"uid": "\\ud800", "expires": 2000, "sig": "x"}', "not valid Unicode"),
            ("\ud800:2000:x", "not valid Unicode"),
            ('{"uid": "u1", "expires": "\u00b2", "sig": "x"}', "Unix time"),
        ]
        for text, reason in cases:
            e = self.assertRaises(ValueError, checkSignedPacket, SECRET, text, 0)
            self.assertIn(reason, str(e), text)


class FirstPacketAuthenticatorTests(SynchronousTestCase):
    """
    The plugin: the handshake waits, the first message decides.
    """

    def build(self, **options: str):
        self.clock = Clock()
        return FirstPacketAuthenticatorFactory().buildAuthenticator(options, self.clock)

    def test_interfaces(self) -> None:
        """
        Factory and authenticator provide their interfaces.
        """
        factory = FirstPacketAuthenticatorFactory()
        for options in ({}, {"verify": "hmac", "secret": "k"}):
            built = verifyPlugin(factory, options)
            self.assertTrue(IFirstMessageAuthenticator.providedBy(built))
            self.assertTrue(IWarnings.providedBy(built))

    def test_handshakeWaits(self) -> None:
        """
        The handshake asks for the first message, with the configured timeout.
        """
        self.assertEqual(self.build().checkHandshake(REQUEST), AwaitFirstMessage(10.0))
        self.assertEqual(self.build(timeout="2.5").checkHandshake(REQUEST), AwaitFirstMessage(2.5))

    def test_verifyNone(self) -> None:
        """
        Without verification the text is the uid, and startup is warned.
        """
        auth = self.build()
        self.assertEqual(auth.checkFirstMessage(REQUEST, b"uid1", False), Accept(Identity("uid1")))
        self.assertEqual(
            auth.checkFirstMessage(REQUEST, b"uid1", True),
            Deny(closecodes.AUTH_FAILED, "first message must be text (the uid), not binary"),
        )
        self.assertEqual(auth.checkFirstMessage(REQUEST, b"", False), Deny(closecodes.AUTH_FAILED, "empty uid"))
        [warning] = auth.warnings()
        self.assertIn("any client can claim any uid", warning)

    def test_verifyHmac(self) -> None:
        """
        With hmac, a signed packet is accepted until it expires by the reactor's clock.
        """
        auth = self.build(verify="hmac", secret="k")
        self.assertEqual(auth.warnings(), [])
        packet = signFirstPacket(b"k", "u9", 100).encode()
        self.assertEqual(auth.checkFirstMessage(REQUEST, packet, False), Accept(Identity("u9")))
        self.clock.advance(101)
        self.assertEqual(
            auth.checkFirstMessage(REQUEST, packet, False), Deny(closecodes.AUTH_FAILED, "signature expired")
        )
        self.assertEqual(auth.checkFirstMessage(REQUEST, b"u9", False).code, closecodes.AUTH_FAILED)

    def test_connection(self) -> None:
        """
        Driven as the server drives it: the connection waits for its first
        message, which decides; a signature expires by the reactor's clock;
        silence past the timeout closes with C{AUTH_TIMEOUT}.
        """
        auth = self.build(verify="hmac", secret="k", timeout="5")
        packet = signFirstPacket(b"k", "u9", 100)
        attempt = AuthenticationAttempt(auth, REQUEST, self.clock)
        self.assertEqual(attempt.state, "awaiting")
        attempt.send(packet)
        attempt.send("hello")
        self.assertEqual((attempt.state, attempt.identity, attempt.routed), ("open", Identity("u9"), [(b"hello", False)]))
        self.clock.advance(101)
        late = AuthenticationAttempt(auth, REQUEST, self.clock)
        late.send(packet)
        self.assertEqual(late.closed, (closecodes.AUTH_FAILED, "signature expired"))
        silent = AuthenticationAttempt(auth, REQUEST, self.clock)
        self.clock.advance(4.9)
        self.assertEqual(silent.state, "awaiting")
        self.clock.advance(0.1)
        self.assertEqual(silent.closed, (closecodes.AUTH_TIMEOUT, "authentication timeout"))

    def test_badOptions(self) -> None:
        """
        Bad options are refused naming the option.
        """
        factory = FirstPacketAuthenticatorFactory()
        cases = [
            ({"verify": "maybe"}, "option 'verify' must be one of none, hmac"),
            ({"verify": "hmac"}, "option 'secret' is required"),
            ({"secret": "x"}, "option 'secret' is only used with verify=hmac"),
            ({"timeout": "soon"}, "option 'timeout' must be a number"),
            ({"timeout": "0"}, "option 'timeout' must be a finite number >= 0.1"),
            ({"colour": "red"}, "unknown option 'colour'"),
        ]
        for options, message in cases:
            e = self.assertRaises(ValueError, factory.buildAuthenticator, options, Clock())
            self.assertIn(message, str(e))
            self.assertTrue(str(e).startswith("uid-first-packet: "))


class AnonymousTests(SynchronousTestCase):
    """
    Anonymous auth accepts everyone under a fresh uid.
    """

    def test_anonymous(self) -> None:
        """
        Each handshake gets a different generated uid with the prefix.
        """
        factory = AnonymousAuthenticatorFactory()
        auth = verifyPlugin(factory, {"prefix": "guest-"})
        self.assertFalse(IFirstMessageAuthenticator.providedBy(auth))
        a, b = auth.checkHandshake(REQUEST), auth.checkHandshake(REQUEST)
        self.assertTrue(a.identity.uid.startswith("guest-"))
        self.assertNotEqual(a.identity.uid, b.identity.uid)
        self.assertTrue(auth.warnings())
