"""
``--routing chat``: every message is relayed to every other authenticated
client and not back to its sender (Ratchet's ``Chat`` component, and the
classic PHP ``socket_select`` chat server).
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.interfaces import IRoutingStrategy, IRoutingStrategyFactory, ISession, ISessionRegistry
from realtime.values import Deliver


@implementer(IRoutingStrategy)
class ChatStrategy:
    """
    Relay to everyone but the sender.
    """

    def route(
        self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry
    ) -> tuple[Deliver]:
        """
        Deliver C{payload}, framed once, to all other sessions.
        """
        others = tuple(s for s in registry.allSessions() if s is not session)
        return (Deliver(others, payload, isBinary),)


@implementer(IPlugin, IRoutingStrategyFactory)
class ChatStrategyFactory:
    """
    The ``chat`` routing plugin.
    """

    name = "chat"
    description = "relay each message to every other client, not back to the sender (Ratchet chat)"
    options: Mapping[str, str] = {}

    def buildRoutingStrategy(self, options: Mapping[str, str], reactor: IReactorTime) -> ChatStrategy:
        """
        Chat takes no options.
        """
        PluginOptions(self.name, options, self.options)
        return ChatStrategy()
