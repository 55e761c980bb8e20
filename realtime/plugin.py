"""
Everything a plugin author imports, from one place.

A plugin is written against this module alone (and its tests against
C{realtime.testing}); the modules these names come from are the server's
own layout, which moves.  Like Klein's package façade, what is here is the
public surface: a name is added with care and removed only with notice.

Declaring a plugin:
    - C{IPlugin}, C{implementer}: a plugin is an object providing C{IPlugin}
      and one factory interface, in a file Twisted's plugin system finds.

Auth plugins:
    - C{IAuthenticatorFactory}: built from ``--auth NAME`` and its
      ``--auth-option KEY=VALUE`` pairs.
    - C{IAuthenticator}: C{checkHandshake(request)}, all a handshake-time
      plugin writes.
    - C{IFirstMessageAuthenticator}: adds C{checkFirstMessage}, for plugins
      that answer C{AwaitFirstMessage}.
    - C{IWarnings}: adds C{warnings()}, for configurations that are insecure
      (logged loudly at startup).
    - C{IChannelAuthorizer}: adds C{maySubscribe} / C{mayPublish}, per
      channel.
    - C{HandshakeRequest}: what C{checkHandshake} sees (path, params,
      lower-case headers, offered protocols, origin, peer).
    - C{Identity}, C{Accept}, C{Deny}, C{AwaitFirstMessage}: the answers.
    - C{HandshakeDecision}, C{FirstMessageDecision}: their unions, for type
      hints.
    - C{checkUid}: refuse uids no push could address (pass every uid you
      accept through it).

Routing plugins:
    - C{IRoutingStrategyFactory}, C{IRoutingStrategy}: built from
      ``--routing NAME``; C{route(session, payload, isBinary, registry)}.
    - C{IPushFraming}: wrap backend pushes in the strategy's own frames.
    - C{IRoutingContextUser}: a factory whose strategy needs the server's
      services, built with C{buildRoutingStrategyInContext(options, reactor,
      context)}; C{IRoutingContext} is that context, C{IChannelService} the
      channel service it holds.
    - C{ISession}, C{ISessionRegistry}: what C{route} is given.
    - C{Reply}, C{Deliver}, C{Refuse}, C{Close}: the actions C{route} answers;
      C{Action} is their union.

Both:
    - C{PluginOptions}: read ``--auth-option`` / ``--routing-option`` values,
      refusing unknown options and bad values with a message naming them.
    - C{closecodes}: the WebSocket close codes this server sends
      (C{closecodes.AUTH_FAILED}, C{closecodes.FORBIDDEN}, ...).
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime import closecodes
from realtime.config.pluginoptions import PluginOptions
from realtime.core.uids import checkUid
from realtime.interfaces import (
    IAuthenticator,
    IAuthenticatorFactory,
    IChannelAuthorizer,
    IChannelService,
    IFirstMessageAuthenticator,
    IPushFraming,
    IRoutingContext,
    IRoutingContextUser,
    IRoutingStrategy,
    IRoutingStrategyFactory,
    ISession,
    ISessionRegistry,
    IWarnings,
)
from realtime.values import (
    Accept,
    Action,
    AwaitFirstMessage,
    Close,
    Deliver,
    Deny,
    FirstMessageDecision,
    HandshakeDecision,
    HandshakeRequest,
    Identity,
    Refuse,
    Reply,
)

__all__ = (
    # declaring
    "IPlugin",
    "implementer",
    # auth
    "IAuthenticatorFactory",
    "IAuthenticator",
    "IFirstMessageAuthenticator",
    "IWarnings",
    "IChannelAuthorizer",
    "HandshakeRequest",
    "Identity",
    "Accept",
    "Deny",
    "AwaitFirstMessage",
    "HandshakeDecision",
    "FirstMessageDecision",
    "checkUid",
    # routing
    "IRoutingStrategyFactory",
    "IRoutingStrategy",
    "IPushFraming",
    "IRoutingContextUser",
    "IRoutingContext",
    "IChannelService",
    "ISession",
    "ISessionRegistry",
    "Reply",
    "Deliver",
    "Refuse",
    "Close",
    "Action",
    # both
    "PluginOptions",
    "closecodes",
)
