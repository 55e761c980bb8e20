"""
An example auth plugin: trust the user name a reverse proxy puts in a header.

Many sites already authenticate users in nginx or Apache (``auth_request``,
SSO modules) and pass the user on as a header.  This plugin accepts a
WebSocket when that header is present *and* the connection comes from the
proxy itself, so nobody can forge the header by connecting directly.

Copy this file into a directory you pass to ``--plugin-dir`` (``./plugins`` is
used by default when it exists) and start with::

    twistd -n realtime --auth proxy-header --auth-option trusted-peer=127.0.0.1

README.rst ("Writing an auth plugin") shows the code below and how to test it.
"""

# README.rst's example starts here
from realtime.plugin import Accept, Deny, IAuthenticator, IAuthenticatorFactory, IPlugin
from realtime.plugin import Identity, PluginOptions, checkUid, implementer


@implementer(IAuthenticator)
class ProxyHeaderAuthenticator:
    def __init__(self, header, trustedPeers):
        self.header, self.trustedPeers = header, trustedPeers

    def checkHandshake(self, request):
        if request.peerHost not in self.trustedPeers:
            return Deny(403, "connect through the proxy")
        try:
            return Accept(Identity(uid=checkUid(request.headers.get(self.header, ""))))
        except ValueError as e:
            return Deny(401, f"{self.header} header: {e}")


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
        peers = {p.strip() for p in opts.string("trusted-peer", "127.0.0.1").split(",") if p.strip()}
        if not peers:
            raise opts.error("trusted-peer", "must name at least one address")
        return ProxyHeaderAuthenticator(opts.string("header", "x-forwarded-user").lower(), peers)


proxyHeaderAuth = ProxyHeaderAuthenticatorFactory()
