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

``mode=wx1`` (the default): ``signature`` is the lower-case hex SHA-1 of
``wx1:<token>:<timestamp>:<nonce>:<uid>``, the nonce 16 to 32 letters and
digits; L{realtime.auth.wechatsign} says why this binds every value to its
field.  A nonce is good once, for whichever uid, while its timestamp is
acceptable.

``mode=legacy-sorted``: the SHA-1 of ``[token, timestamp, nonce, uid]``
sorted as strings and concatenated, this plugin's former default.  It does
not bind values to fields (a client that picks its nonce can connect as
another uid), so startup warns loudly; replays are refused by signature,
which at least stops a seen ticket coming back re-split.

``mode=seed``: ``signature`` is ``sha1(token . timestamp)`` as in the PHP seed.
It binds neither the uid nor the nonce, so anyone who sees one signature can
connect as any uid within the window; startup warns about it loudly.

Timestamps more than ``window`` seconds from the server clock are refused.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.auth.wechatsign import (  # noqa: F401 (re-exported: they lived here first)
    DEFAULT_MODE,
    DEFAULT_WINDOW,
    HEX_SIGNATURE,
    MODES,
    VerifiedCredentials,
    checkSignature,
    computeSignature,
    parseNonce,
    parseTimestamp,
    signingText,
)
from realtime.config.pluginoptions import PluginOptions
from realtime.interfaces import IAuthenticator, IAuthenticatorFactory, IWarnings
from realtime.values import Accept, Deny, HandshakeRequest, Identity

#: the HTTP status of every refusal: the client must sign again
UNAUTHORIZED = 401

DEFAULT_MAX_NONCES = 100_000
#: shorter tokens can be brute-forced offline from one captured signature
MIN_TOKEN_LENGTH = 16
#: the prefix of the subprotocol form carrying all four fields
SUBPROTOCOL_PREFIX = "wx."


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


def parseSubprotocol(value: str) -> WeChatCredentials | None:
    """
    The credentials an offered subprotocol carries, or C{None} if it is not
    one of ours (a client may offer unrelated ones too).

    @raise ValueError: for a ``wx.`` value of the wrong shape, so the client
        learns why instead of reading "missing signature".
    """
    if HEX_SIGNATURE.fullmatch(value):
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


@implementer(IAuthenticator, IWarnings)
class WeChatAuthenticator:
    """
    Checks the signature at the handshake and remembers nonces.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        token: str,
        *,
        mode: str = DEFAULT_MODE,
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
        # wx1: the nonce alone, so it is spent for every uid; the legacy
        # modes: the signature, which every re-split of a ticket shares
        if self.mode == "wx1":
            key, reused = ("nonce", verified.nonce), "nonce already used"
        else:
            key, reused = ("signature", verified.signature), "signature already used"
        if not self.nonces.claim(key, verified.timestamp + self.window, now):
            return Deny(UNAUTHORIZED, reused)
        return Accept(Identity(uid=verified.uid, subprotocol=credentials.subprotocol))

    def warnings(self) -> Sequence[str]:
        """
        The legacy modes and short tokens let a captured signature, or a
        guess, stand in for someone else.
        """
        found = []
        if self.mode == "seed":
            found.append(
                "auth 'wechat' with mode=seed: the signature sha1(token + timestamp) binds neither the uid "
                "nor the nonce, so anyone who sees one signature can connect as ANY uid for "
                f"{self.window:g} s. Use mode=wx1 (the default) in production."
            )
        if self.mode == "legacy-sorted":
            found.append(
                "auth 'wechat' with mode=legacy-sorted: sha1 of the sorted token, timestamp, nonce and uid does "
                "not bind values to fields, so a client that chooses its nonce can connect as ANOTHER uid (a "
                "ticket for uid=adminx nonce=q7f3k9 also passes as uid=a nonce=dminxq7f3k9). Sign "
                "wx1:<token>:<timestamp>:<nonce>:<uid> and drop the option (mode=wx1 is the default)."
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
        "mode": "wx1: sha1('wx1:<token>:<timestamp>:<nonce>:<uid>'); legacy-sorted: sha1 of the four sorted "
        "(insecure: a client can re-split uid and nonce, warns at startup); seed: sha1(token + timestamp) "
        "(insecure, warns at startup) (default wx1)",
        "window": "seconds a timestamp may differ from the server clock, either way (default 300)",
        "max-nonces": "most nonces remembered against replay; the oldest is evicted beyond it (default 100000)",
    }

    def buildAuthenticator(self, options: Mapping[str, str], reactor: IReactorTime) -> WeChatAuthenticator:
        """
        Check the options and build it.
        """
        opts = PluginOptions(self.name, options, self.options)
        token = opts.string("token", required=True) or ""
        if options.get("mode") == "sorted":
            raise opts.error(
                "mode",
                "sorted is now legacy-sorted and no longer the default: it lets a client that picks its nonce "
                "connect as another uid. Sign wx1:<token>:<timestamp>:<nonce>:<uid> (README, auth 'wechat'), "
                "or say mode=legacy-sorted until your backend does",
            )
        mode = opts.choice("mode", MODES, DEFAULT_MODE)
        window = opts.number("window", DEFAULT_WINDOW, minimum=1.0)
        maxNonces = opts.integer("max-nonces", DEFAULT_MAX_NONCES, minimum=1)
        return WeChatAuthenticator(reactor, token, mode=mode, window=window, maxNonces=maxNonces)
