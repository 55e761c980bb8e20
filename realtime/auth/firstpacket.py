"""
``--auth uid-first-packet``: the first text message names the uid, as
Workerman push clients do (``ws.send(uid)`` in ``onopen``).

``verify=none`` trusts that message (demo only: anyone can claim any uid, and
startup says so loudly).  ``verify=hmac`` wants the backend to have signed
it: ``uid:expires:signature`` (or the JSON object
``{"uid": ..., "expires": ..., "sig": ...}``), where ``expires`` is a Unix
time and ``signature`` is the lower-case hex HMAC-SHA256 of ``uid:expires``
under the shared ``secret``.  The backend hands that string to its page; see
``realtime.client.blocking.signFirstPacket``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping, Sequence, cast

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime import closecodes
from realtime.config.pluginoptions import PluginOptions
from realtime.core.jsoncodec import decode
from realtime.core.uids import MAX_UID_LENGTH, parseUid  # noqa: F401 (uids were first checked here)
from realtime.interfaces import IAuthenticatorFactory, IFirstMessageAuthenticator, IWarnings
from realtime.values import Accept, AwaitFirstMessage, Deny, HandshakeRequest, Identity


def decodeFirstPacket(payload: bytes, isBinary: bool) -> str:
    """
    The text of a first packet.

    @raise ValueError: for a binary message (or one that is not UTF-8).
    """
    if isBinary:
        raise ValueError("first message must be text (the uid), not binary")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("first message is not UTF-8") from None


def signFirstPacket(secret: bytes, uid: str, expires: int) -> str:
    """
    The first packet a backend hands to a client for C{verify=hmac}.
    """
    signature = hmac.new(secret, f"{uid}:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{uid}:{expires}:{signature}"


def checkSignedPacket(secret: bytes, text: str, now: float) -> str:
    """
    The uid a signed first packet vouches for.

    @raise ValueError: naming what is wrong (format, signature, expiry).
    """
    if text.lstrip().startswith("{"):
        try:
            obj = decode(text)
            uid, expires, signature = obj["uid"], obj["expires"], obj["sig"]
        except (ValueError, KeyError, TypeError):
            raise ValueError('first message must be {"uid", "expires", "sig"} or uid:expires:sig') from None
        if not (isinstance(uid, str) and isinstance(signature, str)):
            raise ValueError("uid and sig must be strings")
        expires = str(expires)
    else:
        parts = text.strip().rsplit(":", 2)
        if len(parts) != 3:
            raise ValueError("first message must be uid:expires:signature")
        uid, expires, signature = parts
    uid = parseUid(uid)
    if not (expires.isascii() and expires.isdigit()):
        raise ValueError("expires must be a Unix time in whole seconds")
    expected = hmac.new(secret, f"{uid}:{expires}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise ValueError("bad signature")
    if int(expires) < now:
        raise ValueError("signature expired")
    return uid


@implementer(IFirstMessageAuthenticator, IWarnings)
class FirstPacketAuthenticator:
    """
    Waits for the first message and takes the uid from it.
    """

    def __init__(self, reactor: IReactorTime, timeout: float, secret: bytes | None) -> None:
        self._reactor = reactor
        self.timeout = timeout
        self.secret = secret

    def checkHandshake(self, request: HandshakeRequest) -> AwaitFirstMessage:
        """
        Everything is decided by the first message.
        """
        return AwaitFirstMessage(self.timeout)

    def checkFirstMessage(self, request: HandshakeRequest, payload: bytes, isBinary: bool) -> Accept | Deny:
        """
        Accept the uid in C{payload}, checking its signature if configured.
        """
        try:
            text = decodeFirstPacket(payload, isBinary)
            if self.secret is None:
                uid = parseUid(text)
            else:
                uid = checkSignedPacket(self.secret, text, self._reactor.seconds())
        except ValueError as e:
            return Deny(closecodes.AUTH_FAILED, str(e))
        return Accept(Identity(uid=uid))

    def warnings(self) -> Sequence[str]:
        """
        Unverified uids are a demo, not a deployment.
        """
        if self.secret is None:
            return [
                "auth 'uid-first-packet' with verify=none: any client can claim any uid "
                "and read its pushes. Use verify=hmac with a secret in production."
            ]
        return []


@implementer(IPlugin, IAuthenticatorFactory)
class FirstPacketAuthenticatorFactory:
    """
    The ``uid-first-packet`` auth plugin (Workerman's push clients).
    """

    name = "uid-first-packet"
    description = "the first text message is the uid (Workerman push clients); optionally HMAC-signed"
    options = {
        "verify": "none (demo: trust the uid, warns at startup) or hmac (default none)",
        "secret": "HMAC-SHA256 key for verify=hmac (required then)",
        "timeout": "seconds to wait for the first message before closing with 4002 (default 10)",
    }

    def buildAuthenticator(self, options: Mapping[str, str], reactor: IReactorTime) -> FirstPacketAuthenticator:
        """
        Check the options and build it.
        """
        opts = PluginOptions(self.name, options, self.options)
        verify = opts.choice("verify", ["none", "hmac"], "none")
        timeout = opts.number("timeout", 10.0, minimum=0.1)
        secret = opts.string("secret", required=verify == "hmac")
        if verify == "none" and secret:
            raise opts.error("secret", "is only used with verify=hmac")
        return FirstPacketAuthenticator(reactor, timeout, cast(str, secret).encode() if verify == "hmac" else None)
