"""
``--routing channels``: the JSON channels protocol (``realtime.core.channelwire``):
subscribe with resume, unsubscribe, publish, presence and ping, each with an
id and exactly one reply.

The strategy only reads requests; malformed ones are answered here with an
error reply and the connection stays open, well-formed ones are handed to
the router (``Call``) which answers them.
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from realtime.config.pluginoptions import PluginOptions
from realtime.core import channelwire as channelproto
from realtime.interfaces import IPushFraming, IRoutingStrategy, IRoutingStrategyFactory, ISession, ISessionRegistry
from realtime.values import Call, Reply


@implementer(IRoutingStrategy, IPushFraming)
class ChannelsStrategy:
    """
    Parse each message as a request.
    """

    def route(
        self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry
    ) -> tuple[Reply] | tuple[Call]:
        """
        A request for the router, or an error reply.
        """
        parsed = channelproto.parseRequest(payload, isBinary)
        if isinstance(parsed, channelproto.Failure):
            return (Reply(channelproto.encodeError(parsed.id, parsed.code, parsed.message)),)
        return (Call(parsed),)

    def framePush(self, payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
        """
        Backend pushes arrive as ``{"type": "push", "data": "<text>"}``.
        """
        return channelproto.encodePush(payload, isBinary)


@implementer(IPlugin, IRoutingStrategyFactory)
class ChannelsStrategyFactory:
    """
    The ``channels`` routing plugin.
    """

    name = "channels"
    description = "JSON protocol: subscribe (with resume from an offset), publish, presence; see README"
    options: Mapping[str, str] = {}

    def buildRoutingStrategy(self, options: Mapping[str, str], reactor: IReactorTime) -> ChannelsStrategy:
        """
        The channels protocol takes its settings from ``--namespace``.
        """
        PluginOptions(self.name, options, self.options)
        return ChannelsStrategy()
