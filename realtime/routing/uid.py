"""
``--routing uid``: the Workerman push service.  The backend pushes to uids or
to everyone; clients only listen.  A client that sends anything after
authenticating gets an error frame saying so, instead of silence.
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.interfaces import IRoutingStrategy, IRoutingStrategyFactory, ISession, ISessionRegistry
from realtime.values import Refuse

PUSH_ONLY = Refuse(
    "push-only",
    "this server only pushes (routing 'uid'): messages from clients are not accepted",
)


@implementer(IRoutingStrategy)
class UidStrategy:
    """
    Push-only: refuse client messages with a clear error.
    """

    def route(
        self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry
    ) -> tuple[Refuse]:
        """
        Tell the client it cannot send here.
        """
        return (PUSH_ONLY,)


@implementer(IPlugin, IRoutingStrategyFactory)
class UidStrategyFactory:
    """
    The ``uid`` routing plugin (the default).
    """

    name = "uid"
    description = "backend pushes to uids or everyone; client messages get an error frame (Workerman push)"
    options: Mapping[str, str] = {}

    def buildRoutingStrategy(self, options: Mapping[str, str], reactor: IReactorTime) -> UidStrategy:
        """
        Uid routing takes no options.
        """
        PluginOptions(self.name, options, self.options)
        return UidStrategy()
