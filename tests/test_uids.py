"""
What a uid may be, checked the same way wherever one enters: every auth
plugin and every backend request that names uids (issue 10.9).
"""

from __future__ import annotations

import hashlib
import sys
import time
import unicodedata

import jwt
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.api.targets import LineError, targetUids
from realtime.auth.anonymous import AnonymousAuthenticatorFactory
from realtime.auth.firstpacket import parseUid
from realtime.auth.token import TokenAuthenticatorFactory
from realtime.auth.wechat import WeChatAuthenticatorFactory, computeSignature
from realtime.core.uids import MAX_UID_LENGTH, checkUid
from realtime.testing import makeHandshakeRequest
from realtime.values import Accept

#: invisible or text-reordering characters a uid must not hide: right-to-left override, zero-width space,
#: zero-width joiner, byte order mark, soft hyphen, word joiner, a tag character, line separator
FORMAT_CHARACTERS = ["\u202e", "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060", "\U000e0041", "\u2028"]
#: C0 and C1 controls
CONTROL_CHARACTERS = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b"]
#: what stays allowed: letters of any script, emoji, punctuation, inner spaces
GOOD = ["alice", "用户1", "ユーザー", "مستخدم", "user@example.com", "a b", "🙂", "a:b.c/d"]


class SharedRulesTests(SynchronousTestCase):
    """
    Each place a uid enters refuses format and control characters, and accepts the same good uids.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(time.time())

    def entries(self, uid: str) -> dict[str, bool]:
        """
        Whether each entry point accepts C{uid}.
        """
        return {
            "first-packet": self.accepts(parseUid, uid),
            "push": self.accepts(targetUids, uid),
            "push-list": self.accepts(targetUids, ["ok", uid]),
            "token": self.tokenAccepts(uid),
            "wechat": self.wechatAccepts(uid),
        }

    @staticmethod
    def accepts(check: object, value: object) -> bool:
        try:
            check(value)  # type: ignore[operator]
        except (ValueError, LineError):
            return False
        return True

    def tokenAccepts(self, uid: str) -> bool:
        secret = "s" * 32
        authenticator = TokenAuthenticatorFactory().buildAuthenticator({"secret": secret}, self.clock)
        token = jwt.encode({"sub": uid, "exp": self.clock.seconds() + 60}, secret, algorithm="HS256")
        decision = authenticator.checkHandshake(makeHandshakeRequest("/ws", params={"token": token}))
        return isinstance(decision, Accept)

    def wechatAccepts(self, uid: str) -> bool:
        token = "wechat-token-0123456789"
        authenticator = WeChatAuthenticatorFactory().buildAuthenticator({"token": token}, self.clock)
        timestamp = str(int(self.clock.seconds()))
        nonce = hashlib.sha1(uid.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        signature = computeSignature(token, timestamp, nonce, uid)
        params = {"uid": [uid], "timestamp": [timestamp], "nonce": [nonce], "signature": [signature]}
        return isinstance(authenticator.checkHandshake(makeHandshakeRequest("/ws", params=params)), Accept)

    def test_formatCharactersRefused(self) -> None:
        """
        A format character anywhere in a uid is refused everywhere.
        """
        for character in FORMAT_CHARACTERS:
            for uid in (f"admin{character}", f"{character}admin", f"ad{character}min"):
                self.assertEqual(set(self.entries(uid).values()), {False}, (ascii(uid), self.entries(uid)))

    def test_controlCharactersRefused(self) -> None:
        """
        So is a control character inside a uid, C1 controls included.
        """
        for character in CONTROL_CHARACTERS:
            uid = f"ad{character}min"
            self.assertEqual(set(self.entries(uid).values()), {False}, (ascii(uid), self.entries(uid)))

    def test_goodUidsAccepted(self) -> None:
        """
        Letters of every script, emoji and punctuation pass everywhere.
        """
        for uid in GOOD:
            self.assertEqual(set(self.entries(uid).values()), {True}, (uid, self.entries(uid)))

    def test_anonymousPrefix(self) -> None:
        """
        The anonymous plugin refuses a prefix that would make every uid it hands out invalid.
        """
        factory = AnonymousAuthenticatorFactory()
        for prefix in ("\u202eanon-", "an\x00on-"):
            e = self.assertRaises(ValueError, factory.buildAuthenticator, {"prefix": prefix}, self.clock)
            self.assertIn("anonymous: option 'prefix'", str(e))


class CheckUidTests(SynchronousTestCase):
    """
    The shared check itself.
    """

    def test_everyRefusedCategoryCovered(self) -> None:
        """
        Every control, format, surrogate, line and paragraph separator code point this Python's Unicode
        knows is refused (so a Python with a newer Unicode shows what the list misses), and only those
        (assigned characters of every other category pass).
        """
        refused = {"Cc", "Cf", "Cs", "Zl", "Zp"}
        wrong = []
        for codePoint in range(sys.maxunicode + 1):
            character = chr(codePoint)
            category = unicodedata.category(character)
            if category == "Cn":
                continue
            try:
                checkUid(f"a{character}b")
            except ValueError:
                if category not in refused:
                    wrong.append((hex(codePoint), category, "refused"))
            else:
                if category in refused:
                    wrong.append((hex(codePoint), category, "accepted"))
        self.assertEqual(wrong, [])

    def test_reasons(self) -> None:
        """
        Each refusal names what is wrong, the character by its Unicode name, and the field as the caller
        calls it.
        """
        cases = {
            "": "empty uid",
            "u" * (MAX_UID_LENGTH + 1): "uid longer than 128 characters",
            "bo\x00b": "uid contains control characters",
            "bob\ud800": "uid is not valid Unicode",
            "admin\u200b": "uid contains U+200B (ZERO WIDTH SPACE), which is invisible or reorders text",
            " bob": "uid begins or ends with whitespace",
            "bob\u3000": "uid begins or ends with whitespace",
        }
        for uid, reason in cases.items():
            self.assertEqual(str(self.assertRaises(ValueError, checkUid, uid)), reason)
        e = self.assertRaises(ValueError, checkUid, "\u202ebob", '"uid"')
        self.assertEqual(str(e), '"uid" contains U+202E (RIGHT-TO-LEFT OVERRIDE), which is invisible or reorders text')
        self.assertEqual(checkUid("u" * MAX_UID_LENGTH), "u" * MAX_UID_LENGTH)

    def test_firstPacketFraming(self) -> None:
        """
        A first packet loses the ASCII spaces and line ends around it, and nothing else.
        """
        self.assertEqual(parseUid(" \tbob\r\n"), "bob")
        for framed in ("bob\u2028", "\u00a0bob", "bob\x85"):
            self.assertRaises(ValueError, parseUid, framed)

    def test_pushReasons(self) -> None:
        """
        The line port and the HTTP API word it for their JSON field, for one uid or a list.
        """
        for value in ("ad\u200dmin", ["ok", "ad\u200dmin"]):
            e = self.assertRaises(LineError, targetUids, value)
            self.assertEqual(str(e), '"uid" contains U+200D (ZERO WIDTH JOINER), which is invisible or reorders text')
