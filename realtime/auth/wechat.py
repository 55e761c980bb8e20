"""
``--auth wechat``: WeChat mini-program signature auth, decided at the
handshake so a refused client never holds an open socket.

The client sends four fields: ``uid``, ``timestamp`` (Unix seconds),
``nonce`` and ``signature``.  Each may come

 - as a query-string parameter of that name (``wss://host/ws?uid=...``),
 - as an HTTP header of that name (``wx.connectSocket({header: {...}})``), or
 - in ``Sec-WebSocket-Protocol`` (``wx.connectSocket({protocols: [...]})``).

A subprotocol token cannot hold ``=`` or ``,``, so two subprotocol forms are
understood:

 - ``<40 hex digits>``: the signature alone; the other fields come from the
   query string or headers.  This is the form the PHP seed used.
 - ``wx.<uid>.<timestamp>.<nonce>.<signature>``: all four fields.  It is split
   from the right, so the uid may contain dots and the nonce may not.

The first offered subprotocol in either form wins over the query string, and
the query string wins over headers.  When the credentials came as a
subprotocol, the handshake response echoes exactly that value: WeChat and
browsers fail the handshake when the server picks none of the offered ones.

``mode=sorted`` (the default): ``signature`` is the lower-case hex SHA-1 of
the concatenation of ``[token, timestamp, nonce, uid]`` sorted as strings
(PHP: ``sort($a, SORT_STRING)``), i.e. WeChat's own server-verification
algorithm extended so that the signature also binds the uid.

``mode=seed``: ``signature`` is ``sha1(token . timestamp)`` as in the PHP seed.
It binds neither the uid nor the nonce, so anyone who sees one signature can
connect as any uid within the window; startup warns about it loudly.

Timestamps more than ``window`` seconds from the server clock are refused, and
so is a nonce (seed mode: a signature) already used by the same uid while its
timestamp is still acceptable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime import closecodes
from realtime.auth.firstpacket import parseUid
from realtime.interfaces import IAuthenticator, IAuthenticatorFactory
from realtime.pluginoptions import PluginOptions
from realtime.values import Accept, Deny, HandshakeRequest, Identity

#: the HTTP status of every refusal: the client must sign again
UNAUTHORIZED = 401

MODES = ("sorted", "seed")
DEFAULT_WINDOW = 300.0
DEFAULT_MAX_NONCES = 100_000
MAX_NONCE_LENGTH = 64
#: a timestamp of more digits is not Unix seconds in any century we serve
MAX_TIMESTAMP_DIGITS = 16
#: shorter tokens can be brute-forced offline from one captured signature
MIN_TOKEN_LENGTH = 16
#: the prefix of the subprotocol form carrying all four fields
SUBPROTOCOL_PREFIX = "wx."

_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")


@dataclass(frozen=True, slots=True)
class WeChatCredentials:
    """
    The four fields as the client sent them, not yet checked.

    @ivar subprotocol: the offered subprotocol they (or the signature) came
        in, which the handshake must echo; C{None} if none did.
    """

    uid: str | None = None
    timestamp: str | None = None
    nonce: str | None = None
    signature: str | None = None
    subprotocol: str | None = None


def computeSignature(token: str, timestamp: str, nonce: str = "", uid: str = "", mode: str = "sorted") -> str:
    """
    The signature a client must send; backends call this to hand one out.

    @param mode: C{"sorted"} binds all four fields; C{"seed"} ignores
        C{nonce} and C{uid}, as the PHP seed did.
    @return: 40 lower-case hex digits.
    @raise ValueError: for an unknown C{mode}.
    """
    if mode == "sorted":
        text = "".join(sorted([token, timestamp, nonce, uid]))
    elif mode == "seed":
        text = token + timestamp
    else:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def parseSubprotocol(value: str) -> WeChatCredentials | None:
    """
    The credentials an offered subprotocol carries, or C{None} if it is not
    one of ours (a client may offer unrelated ones too).

    @raise ValueError: for a ``wx.`` value of the wrong shape, so the client
        learns why instead of reading "missing signature".
    """
    if _HEX_SIGNATURE.fullmatch(value):
        return WeChatCredentials(signature=value, subprotocol=value)
    if value.startswith(SUBPROTOCOL_PREFIX):
        parts = value[len(SUBPROTOCOL_PREFIX) :].rsplit(".", 3)
        if len(parts) != 4:
            raise ValueError("subprotocol must be wx.<uid>.<timestamp>.<nonce>.<signature>")
        uid, timestamp, nonce, signature = parts
        return WeChatCredentials(uid, timestamp, nonce, signature, subprotocol=value)
    return None


def extractCredentials(request: HandshakeRequest) -> WeChatCredentials:
    """
    Gather the fields from the subprotocol, query string and headers, in that
    order of precedence; empty values count as absent.

    @raise ValueError: for a malformed ``wx.`` subprotocol.
    """
    offered = None
    for protocol in request.protocols:
        offered = parseSubprotocol(protocol)
        if offered is not None:
            break
    if offered is not None and offered.uid is not None:
        return offered

    def field(name: str) -> str | None:
        return request.param(name) or request.headers.get(name) or None

    return WeChatCredentials(
        uid=field("uid"),
        timestamp=field("timestamp"),
        nonce=field("nonce"),
        signature=offered.signature if offered is not None else field("signature"),
        subprotocol=offered.subprotocol if offered is not None else None,
    )


def parseTimestamp(text: str) -> int:
    """
    Unix seconds from C{text}; only ASCII digits, so ``+1``, ``1e9`` and
    other digits Python's C{int} would take are refused.

    @raise ValueError: if it is not whole seconds.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_TIMESTAMP_DIGITS:
        raise ValueError("timestamp must be a Unix time in whole seconds")
    return int(text)


def parseNonce(text: str) -> str:
    """
    C{text} if it is a usable nonce: it is a cache key and part of a
    subprotocol token, so it is short and printable.

    @raise ValueError: otherwise.
    """
    if not 1 <= len(text) <= MAX_NONCE_LENGTH or not all(33 <= ord(c) <= 126 for c in text):
        raise ValueError(f"nonce must be 1 to {MAX_NONCE_LENGTH} printable ASCII characters")
    return text


@dataclass(frozen=True, slots=True)
class VerifiedCredentials:
    """
    Fields that passed L{checkSignature}, normalised.

    @ivar uid: as L{parseUid} returns it.
    @ivar timestamp: Unix seconds.
    @ivar nonce: C{None} only in seed mode.
    @ivar signature: lower-case hex.
    """

    uid: str
    timestamp: int
    nonce: str | None
    signature: str


def checkSignature(
    token: str,
    *,
    uid: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float,
    window: float = DEFAULT_WINDOW,
    mode: str = "sorted",
) -> VerifiedCredentials:
    """
    Check one set of fields, as the client sent them, against C{token} and
    the clock C{now}.

    Replays are not checked here: that needs memory (L{NonceCache}).

    @raise ValueError: naming the first thing wrong; its text is the reason
        the client is given.
    """
    if not signature:
        raise ValueError("missing signature")
    if not timestamp:
        raise ValueError("missing timestamp")
    if not nonce and mode == "sorted":
        raise ValueError("missing nonce")
    if not uid:
        raise ValueError("missing uid")
    parsedUid = parseUid(uid)
    seconds = parseTimestamp(timestamp)
    if nonce:
        parseNonce(nonce)
    if not _HEX_SIGNATURE.fullmatch(signature):
        raise ValueError("malformed signature: expected 40 hex digits")
    if abs(seconds - now) > window:
        raise ValueError(f"timestamp outside the {window:g} s window")
    expected = computeSignature(token, timestamp, nonce or "", uid, mode)
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise ValueError("bad signature")
    return VerifiedCredentials(parsedUid, seconds, nonce or None, signature.lower())


class NonceCache:
    """
    The replay keys seen recently, bounded in time and in size.

    Each key is kept until its timestamp leaves the window, because until
    then the same request would pass every other check.  Keys are pruned
    oldest first; one that expired behind an older, longer-lived key is
    ignored on lookup and gone within one more window.  When full, the oldest
    key is evicted rather than refusing everyone: only correctly signed
    requests are recorded, so filling it takes the token.

    @ivar evicted: how many keys were dropped to stay within C{maxEntries}.
    """

    def __init__(self, maxEntries: int = DEFAULT_MAX_NONCES) -> None:
        self.maxEntries = maxEntries
        self.evicted = 0
        self._expiry: dict[Hashable, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, key: Hashable, expiresAt: float, now: float) -> bool:
        """
        Record C{key} as used until C{expiresAt}.

        @return: C{False} if it was already used and has not expired.
        """
        self.prune(now)
        known = self._expiry.pop(key, None)
        if known is not None and known >= now:
            self._expiry[key] = known
            return False
        self._expiry[key] = expiresAt
        while len(self._expiry) > self.maxEntries:
            del self._expiry[next(iter(self._expiry))]
            self.evicted += 1
        return True

    def prune(self, now: float) -> None:
        """
        Forget the oldest keys that expired before C{now}.
        """
        while self._expiry:
            oldest = next(iter(self._expiry))
            if self._expiry[oldest] >= now:
                return
            del self._expiry[oldest]


@implementer(IAuthenticator)
class WeChatAuthenticator:
    """
    Checks the signature at the handshake and remembers nonces.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        token: str,
        *,
        mode: str = "sorted",
        window: float = DEFAULT_WINDOW,
        maxNonces: int = DEFAULT_MAX_NONCES,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self._reactor = reactor
        self.token = token
        self.mode = mode
        self.window = window
        self.nonces = NonceCache(maxNonces)

    def checkHandshake(self, request: HandshakeRequest) -> Accept | Deny:
        """
        Accept a fresh, correctly signed request as its uid, echoing the
        subprotocol the credentials came in.
        """
        now = self._reactor.seconds()
        try:
            credentials = extractCredentials(request)
            verified = checkSignature(
                self.token,
                uid=credentials.uid,
                timestamp=credentials.timestamp,
                nonce=credentials.nonce,
                signature=credentials.signature,
                now=now,
                window=self.window,
                mode=self.mode,
            )
        except ValueError as e:
            return Deny(UNAUTHORIZED, str(e))
        if self.mode == "sorted":
            key, reused = (verified.uid, verified.nonce), "nonce already used"
        else:
            key, reused = (verified.uid, verified.signature), "signature already used"
        if not self.nonces.claim(key, verified.timestamp + self.window, now):
            return Deny(UNAUTHORIZED, reused)
        return Accept(Identity(uid=verified.uid, subprotocol=credentials.subprotocol))

    def checkFirstMessage(self, request: HandshakeRequest, payload: bytes, isBinary: bool) -> Deny:
        """
        Never asked: the handshake always decides.
        """
        return Deny(closecodes.AUTH_FAILED, "wechat auth is decided at the handshake")

    def warnings(self) -> Sequence[str]:
        """
        Seed mode and short tokens let a captured signature, or a guess,
        stand in for anyone.
        """
        found = []
        if self.mode == "seed":
            found.append(
                "auth 'wechat' with mode=seed: the signature sha1(token + timestamp) binds neither the uid "
                "nor the nonce, so anyone who sees one signature can connect as ANY uid for "
                f"{self.window:g} s. Use mode=sorted in production."
            )
        if len(self.token) < MIN_TOKEN_LENGTH:
            found.append(
                f"auth 'wechat': the token is shorter than {MIN_TOKEN_LENGTH} characters and can be "
                "brute-forced from one captured signature"
            )
        return found


@implementer(IPlugin, IAuthenticatorFactory)
class WeChatAuthenticatorFactory:
    """
    The ``wechat`` auth plugin (WeChat mini programs, ``wx.connectSocket``).
    """

    name = "wechat"
    description = "WeChat mini-program SHA-1 signature (uid, timestamp, nonce) checked at the handshake"
    options = {
        "token": "the Token configured for the mini program (required)",
        "mode": "sorted (sha1 of sorted token, timestamp, nonce, uid) or seed (sha1(token + timestamp), "
        "insecure, warns at startup) (default sorted)",
        "window": "seconds a timestamp may differ from the server clock, either way (default 300)",
        "max-nonces": "most nonces remembered against replay; the oldest is evicted beyond it (default 100000)",
    }

    def buildAuthenticator(self, options: Mapping[str, str], reactor: IReactorTime) -> WeChatAuthenticator:
        """
        Check the options and build it.
        """
        opts = PluginOptions(self.name, options, self.options)
        token = opts.string("token", required=True) or ""
        mode = opts.choice("mode", MODES, "sorted")
        window = opts.number("window", DEFAULT_WINDOW, minimum=1.0)
        maxNonces = opts.integer("max-nonces", DEFAULT_MAX_NONCES, minimum=1)
        return WeChatAuthenticator(reactor, token, mode=mode, window=window, maxNonces=maxNonces)
