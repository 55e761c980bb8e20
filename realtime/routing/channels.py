"""
``--routing channels``: the JSON channels protocol (``realtime.core.channelwire``):
subscribe with resume, unsubscribe, publish, presence and ping, each with an
id and exactly one reply.

A plugin like any other: its factory asks for the server's channel service
(C{IRoutingContextUser}), the strategy answers each request with a Deferred
of the reply it encodes itself, and the shell only sends that reply, after
the replies to the session's earlier requests.  Malformed requests are
answered at once with an error reply; the connection stays open.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from realtime.broker import BrokerUnavailable
from realtime.config.pluginoptions import PluginOptions
from realtime.core import channelwire
from realtime.interfaces import (
    IChannelService,
    IPushFraming,
    IRoutingContext,
    IRoutingContextUser,
    IRoutingStrategy,
    IRoutingStrategyFactory,
    ISession,
    ISessionRegistry,
)
from realtime.push.channels import RequestError
from realtime.store.health import ShuttingDown, StoreUnavailable
from realtime.values import Reply


@implementer(IRoutingStrategy, IPushFraming)
class ChannelsStrategy:
    """
    Parse each message as a request for the channel service, and encode its
    answer.
    """

    log = Logger()

    def __init__(self, channels: IChannelService) -> None:
        self.channels = channels

    def route(
        self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry
    ) -> tuple[Reply] | Deferred[tuple[Reply]]:
        """
        An error reply at once, or the service's answer as a reply.
        """
        parsed = channelwire.parseRequest(payload, isBinary)
        if isinstance(parsed, channelwire.Failure):
            return (Reply(channelwire.encodeError(parsed.id, parsed.code, parsed.message)),)
        return self.channels.request(session, parsed).addCallbacks(
            self._answered, self._failed, callbackArgs=(parsed.id,), errbackArgs=(parsed.id, session)
        )

    def _answered(self, result: dict[str, Any], requestId: Any) -> tuple[Reply]:
        return (Reply(channelwire.encodeReply(requestId, result)),)

    def _failed(self, failure: Failure, requestId: Any, session: ISession) -> tuple[Reply]:
        error = failure.value
        if isinstance(error, RequestError):
            code, message = error.code, error.message
        elif failure.check(StoreUnavailable, ShuttingDown, BrokerUnavailable):
            # the store's monitor, or the broker, logged it once
            code, message = "unavailable", str(failure.value)
        else:
            self.log.failure("request {id!r} from {session} failed", failure, id=requestId, session=session.sessionId)
            code, message = "internal", "internal error"
        return (Reply(channelwire.encodeError(requestId, code, message)),)

    def framePush(self, payload: bytes, isBinary: bool) -> tuple[bytes, bool]:
        """
        Backend pushes arrive as ``{"type": "push", "data": "<text>"}``.
        """
        return channelwire.encodePush(payload, isBinary)


@implementer(IPlugin, IRoutingStrategyFactory, IRoutingContextUser)
class ChannelsStrategyFactory:
    """
    The ``channels`` routing plugin.
    """

    name = "channels"
    description = "JSON protocol: subscribe (with resume from an offset), publish, presence; see README"
    options: Mapping[str, str] = {}

    def buildRoutingStrategy(self, options: Mapping[str, str], reactor: IReactorTime) -> ChannelsStrategy:
        """
        Refused: the strategy is nothing without the server's channel service.
        """
        PluginOptions(self.name, options, self.options)
        raise ValueError(f"{self.name}: needs the server's channel service (buildRoutingStrategyInContext)")

    def buildRoutingStrategyInContext(
        self, options: Mapping[str, str], reactor: IReactorTime, context: IRoutingContext
    ) -> ChannelsStrategy:
        """
        The channels protocol takes its settings from ``--namespace``.
        """
        PluginOptions(self.name, options, self.options)
        return ChannelsStrategy(context.channels)
