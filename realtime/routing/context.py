"""
What the server offers a routing strategy that asks for its services
(C{IRoutingContextUser}), and the one function that builds any strategy.

A strategy reaches the core through C{IRoutingContext} at build time, never
through the shell: the shell only carries out the actions a strategy answers
with, and knows no strategy by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from realtime.interfaces import (
    IChannelService,
    IRoutingContext,
    IRoutingContextUser,
    IRoutingStrategy,
    IRoutingStrategyFactory,
    ISessionRegistry,
)


@implementer(IRoutingContext)
@dataclass(frozen=True)
class RoutingContext:
    """
    The services of one server, as routing strategies see them.
    """

    registry: ISessionRegistry
    channels: IChannelService


def buildStrategy(
    factory: IRoutingStrategyFactory, options: Mapping[str, str], reactor: IReactorTime, context: IRoutingContext
) -> IRoutingStrategy:
    """
    Build C{factory}'s strategy, in C{context} if the factory asks for one.

    @raise ValueError: naming a bad option, as the factory refuses it.
    """
    if IRoutingContextUser.providedBy(factory):
        strategy: IRoutingStrategy = factory.buildRoutingStrategyInContext(options, reactor, context)
    else:
        strategy = factory.buildRoutingStrategy(options, reactor)
    return strategy
