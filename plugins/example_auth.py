"""
An example auth plugin: trust the user name a reverse proxy puts in a header.

Many sites already authenticate users in nginx or Apache (``auth_request``,
SSO modules) and pass the user on as a header.  This plugin accepts a
WebSocket when that header is present *and* the connection comes from the
proxy itself, so nobody can forge the header by connecting directly.

Copy this file into a directory you pass to ``--plugin-dir`` (``./plugins`` is
used by default when it exists) and start with::

    twistd -n realtime --auth proxy-header --auth-option trusted-peer=127.0.0.1

README.rst walks through it line by line.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.core.uids import checkUid
from realtime.interfaces import IAuthenticator, IAuthenticatorFactory
from realtime.values import Accept, Deny, Identity


@implementer(IAuthenticator)
class ProxyHeaderAuthenticator:
    def __init__(self, header, trustedPeers):
        self.header = header
        self.trustedPeers = trustedPeers

    def checkHandshake(self, request):
        if request.peerHost not in self.trustedPeers:
            return Deny(403, "connect through the proxy")
        uid = request.headers.get(self.header)
        if not uid:
            return Deny(401, f"missing {self.header} header")
        try:
            return Accept(Identity(uid=checkUid(uid)))
        except ValueError as e:
            return Deny(401, f"{self.header} header: {e}")

    def checkFirstMessage(self, request, payload, isBinary):
        return Deny(4001, "authentication happens at the handshake")

    def warnings(self):
        return []


@implementer(IPlugin, IAuthenticatorFactory)
class ProxyHeaderAuthenticatorFactory:
    name = "proxy-header"
    description = "trust the user name a reverse proxy sets in a header (example plugin)"
    options = {
        "header": "request header holding the uid (default x-forwarded-user)",
        "trusted-peer": "address of the proxy, comma-separated for several (default 127.0.0.1)",
    }

    def buildAuthenticator(self, options, reactor):
        opts = PluginOptions(self.name, options, self.options)
        header = opts.string("header", "x-forwarded-user").lower()
        peers = {p.strip() for p in opts.string("trusted-peer", "127.0.0.1").split(",") if p.strip()}
        if not peers:
            raise opts.error("trusted-peer", "must name at least one address")
        return ProxyHeaderAuthenticator(header, peers)


proxyHeaderAuth = ProxyHeaderAuthenticatorFactory()
