"""
``--routing echo``: every message goes back to its sender unchanged, text
as text and binary as binary.  The Autobahn testsuite's testee.
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.interfaces import IRoutingStrategy, IRoutingStrategyFactory, ISession, ISessionRegistry
from realtime.values import Reply


@implementer(IRoutingStrategy)
class EchoStrategy:
    """
    Reply with the message itself.
    """

    def route(
        self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry
    ) -> tuple[Reply]:
        """
        The sender gets C{payload} back.
        """
        return (Reply(payload, isBinary),)


@implementer(IPlugin, IRoutingStrategyFactory)
class EchoStrategyFactory:
    """
    The ``echo`` routing plugin.
    """

    name = "echo"
    description = "each message back to its sender (the Autobahn testsuite testee)"
    options: Mapping[str, str] = {}

    def buildRoutingStrategy(self, options: Mapping[str, str], reactor: IReactorTime) -> EchoStrategy:
        """
        Echo takes no options.
        """
        PluginOptions(self.name, options, self.options)
        return EchoStrategy()
