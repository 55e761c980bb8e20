"""
``--auth anonymous``: every connection is accepted under a generated uid.

For demos, chat rooms without accounts and the Autobahn conformance testee.
"""

from __future__ import annotations

import secrets
from typing import Mapping, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.core.uids import checkUid
from realtime.interfaces import IAuthenticator, IAuthenticatorFactory, IWarnings
from realtime.values import Accept, HandshakeRequest, Identity


@implementer(IAuthenticator, IWarnings)
class AnonymousAuthenticator:
    """
    Accepts everyone at the handshake as ``<prefix><random>``.
    """

    def __init__(self, prefix: str = "anon-") -> None:
        self.prefix = prefix

    def checkHandshake(self, request: HandshakeRequest) -> Accept:
        """
        Accept with a fresh uid.
        """
        return Accept(Identity(uid=self.prefix + secrets.token_hex(6)))

    def warnings(self) -> Sequence[str]:
        """
        Anyone may connect; that is the point, but say so.
        """
        return ["auth 'anonymous' accepts every connection without credentials"]


@implementer(IPlugin, IAuthenticatorFactory)
class AnonymousAuthenticatorFactory:
    """
    The ``anonymous`` auth plugin.
    """

    name = "anonymous"
    description = "accept every connection under a generated uid (demos, conformance testee)"
    options = {"prefix": "prefix of the generated uids (default 'anon-')"}

    def buildAuthenticator(self, options: Mapping[str, str], reactor: IReactorTime) -> AnonymousAuthenticator:
        """
        Build it; the only option is the uid prefix.
        """
        opts = PluginOptions(self.name, options, self.options)
        prefix = opts.string("prefix", "anon-") or ""
        try:
            checkUid(prefix + "0" * 12)
        except ValueError as e:
            raise opts.error("prefix", f"makes no valid uid: {e}") from None
        return AnonymousAuthenticator(prefix=prefix)
