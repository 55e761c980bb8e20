"""
``--auth token``: a JSON Web Token signed by the backend, checked at the
handshake.

The client sends it as ``Authorization: Bearer <jwt>`` (native clients,
``wx.connectSocket({header})``) or, where a browser cannot set headers, as the
query parameter ``token``; the header wins when both are present.

Only HS256 is accepted, whatever the token's header says, so a token cannot
pick ``none`` or an asymmetric algorithm and have the secret misused as a
public key.  The uid is the ``sub`` claim; the channels the connection may
subscribe to are the list in the ``channels`` claim (``channels-claim``);
every claim is kept in C{Identity.claims}.  ``exp``, ``nbf`` and ``iat`` are
checked here against the reactor's clock rather than by PyJWT against the
wall clock, so that tests can drive time and everything agrees on one clock.

``exp`` is required (``require-exp=no`` accepts tokens without one, and
startup warns): a token that never expires is a password that cannot be
changed, good for as long as the secret is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.core.uids import checkUid
from realtime.interfaces import IAuthenticator, IAuthenticatorFactory, IWarnings
from realtime.values import Accept, Deny, HandshakeRequest, Identity

#: the HTTP status of every refusal
UNAUTHORIZED = 401

ALGORITHMS = ["HS256"]
#: RFC 7518 section 3.2: an HS256 key shorter than the hash is guessable
MIN_SECRET_BYTES = 32
#: longer than any sane token; refused before any parsing work
MAX_TOKEN_LENGTH = 8192


def extractToken(request: HandshakeRequest) -> str:
    """
    The token of C{request}: the Bearer header, else the ``token`` parameter.

    @raise ValueError: if there is none.
    """
    authorization = request.headers.get("authorization", "").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    token = request.param("token")
    if token:
        return token
    if authorization:
        raise ValueError("authorization header must be 'Bearer <token>'")
    raise ValueError("missing token")


def _numericClaim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"token {name} must be a number")
    return float(value)


def checkTimes(claims: Mapping[str, Any], now: float, leeway: float = 0.0, requireExp: bool = False) -> None:
    """
    Check ``exp``, ``nbf`` and ``iat`` against C{now}, with PyJWT's bounds.

    @param requireExp: refuse a token without ``exp`` (or with ``null``).
    @raise ValueError: naming the claim that refuses the token.
    """
    exp = _numericClaim(claims, "exp")
    if exp is None and requireExp:
        raise ValueError("token has no exp")
    if exp is not None and exp <= now - leeway:
        raise ValueError("token expired")
    nbf = _numericClaim(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise ValueError("token not yet valid")
    iat = _numericClaim(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise ValueError("token issued in the future")


def channelsFrom(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """
    The channel names or patterns listed in C{claim}; none if it is absent.

    @raise ValueError: if it is not a list of strings.
    """
    value = claims.get(claim)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise ValueError(f"token claim {claim!r} must be a list of channel names")
    return frozenset(value)


def checkToken(
    token: str,
    secret: bytes,
    *,
    now: float,
    leeway: float = 0.0,
    audience: str | None = None,
    issuer: str | None = None,
    channelsClaim: str = "channels",
    requireExp: bool = True,
) -> Identity:
    """
    The identity C{token} vouches for at time C{now}.

    @raise ValueError: with the reason the client is given.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("token too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_sub": False},
        )
    except jwt.InvalidSignatureError:
        raise ValueError("bad token signature") from None
    except jwt.InvalidAlgorithmError:
        raise ValueError("token algorithm must be HS256") from None
    except jwt.InvalidAudienceError:
        raise ValueError("token audience mismatch") from None
    except jwt.InvalidIssuerError:
        raise ValueError("token issuer mismatch") from None
    except jwt.MissingRequiredClaimError as e:
        raise ValueError(f"token has no {e.claim}") from None
    except jwt.DecodeError:
        raise ValueError("malformed token") from None
    except jwt.InvalidTokenError as e:
        raise ValueError(f"invalid token: {e}") from None
    checkTimes(claims, now, leeway, requireExp)
    sub = claims.get("sub")
    if sub is None or sub == "":
        raise ValueError("token has no sub")
    if not isinstance(sub, str):
        raise ValueError("token sub must be a string")
    try:
        uid = checkUid(sub)
    except ValueError as e:
        raise ValueError(f"token sub: {e}") from None
    return Identity(uid=uid, channels=channelsFrom(claims, channelsClaim), claims=MappingProxyType(claims))


@implementer(IAuthenticator, IWarnings)
class TokenAuthenticator:
    """
    Checks a JWT at the handshake.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        secret: bytes,
        *,
        leeway: float = 0.0,
        audience: str | None = None,
        issuer: str | None = None,
        channelsClaim: str = "channels",
        requireExp: bool = True,
    ) -> None:
        self._reactor = reactor
        self.secret = secret
        self.leeway = leeway
        self.audience = audience
        self.issuer = issuer
        self.channelsClaim = channelsClaim
        self.requireExp = requireExp

    def checkHandshake(self, request: HandshakeRequest) -> Accept | Deny:
        """
        Accept a valid token as its ``sub``.
        """
        try:
            identity = checkToken(
                extractToken(request),
                self.secret,
                now=self._reactor.seconds(),
                leeway=self.leeway,
                audience=self.audience,
                issuer=self.issuer,
                channelsClaim=self.channelsClaim,
                requireExp=self.requireExp,
            )
        except ValueError as e:
            return Deny(UNAUTHORIZED, str(e))
        return Accept(identity)

    def warnings(self) -> Sequence[str]:
        """
        A short secret can be found offline from any one token; a token
        without C{exp} works forever once it leaks.
        """
        found = []
        if len(self.secret) < MIN_SECRET_BYTES:
            found.append(
                f"auth 'token': the secret is {len(self.secret)} bytes; HS256 wants at least "
                f"{MIN_SECRET_BYTES} random bytes, or tokens can be forged after an offline guess"
            )
        if not self.requireExp:
            found.append(
                "auth 'token' with require-exp=no: a token without exp is accepted, so one that leaks (a log, "
                "a URL's ?token=) connects as its sub FOREVER, until the secret changes. Give every token an exp."
            )
        return found


@implementer(IPlugin, IAuthenticatorFactory)
class TokenAuthenticatorFactory:
    """
    The ``token`` auth plugin (JWT, HS256).
    """

    name = "token"
    description = "a JWT (HS256) as 'Authorization: Bearer' or ?token=; uid from sub, channels from a claim"
    options = {
        "secret": "the HS256 key shared with the backend (required)",
        "channels-claim": "the claim listing the channels the connection may use (default channels)",
        "leeway": "seconds of clock skew allowed for exp, nbf and iat (default 0)",
        "audience": "the aud the token must name (default: none; a token with an aud is then refused)",
        "issuer": "the iss the token must carry (default: not checked)",
        "require-exp": "refuse tokens without exp (default yes; no: accept them, warns at startup)",
    }

    def buildAuthenticator(self, options: Mapping[str, str], reactor: IReactorTime) -> TokenAuthenticator:
        """
        Check the options and build it.
        """
        opts = PluginOptions(self.name, options, self.options)
        secret = (opts.string("secret", required=True) or "").encode("utf-8")
        try:
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        except jwt.InvalidKeyError as e:
            raise opts.error("secret", f"is not usable as an HMAC key: {e}") from None
        channelsClaim = opts.string("channels-claim", "channels")
        if not channelsClaim:
            raise opts.error("channels-claim", "must not be empty")
        return TokenAuthenticator(
            reactor,
            secret,
            leeway=opts.number("leeway", 0.0),
            audience=opts.string("audience") or None,
            issuer=opts.string("issuer") or None,
            channelsClaim=channelsClaim,
            requireExp=opts.flag("require-exp", True),
        )
