"""
The protocol factory: what every connection shares (the plugins, the router,
the fan-out, the timers) and the options Autobahn gives each protocol.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IReactorTime

from realtime.core.limits import ConnectionLimits, RateLimit
from realtime.core.origins import OriginPolicy
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.timers import TimeoutWheel
from realtime.delivery.writer import TurnWriter
from realtime.interfaces import IAuthenticator, IRoutingStrategy, ISession
from realtime.push.router import Router
from realtime.websocket._autobahn.options import configuredClass
from realtime.websocket._autobahn.rfc6455 import strictOptions
from realtime.websocket.protocol import RealtimeServerProtocol


class RealtimeServerFactory(WebSocketServerFactory):
    """
    Holds what every connection shares: the plugins, the registry and the
    fan-out.
    """

    protocol = RealtimeServerProtocol
    noisy = False

    def __init__(
        self,
        authenticator: IAuthenticator,
        strategy: IRoutingStrategy,
        router: Router,
        fanout: Fanout,
        wheel: TimeoutWheel,
        writer: TurnWriter,
        *,
        registry: SessionRegistry,
        clock: IReactorTime,
        server: str = "realtime",
        maxQueuedBytes: int = 4 * 1024 * 1024,
        maxMessageSize: int = 0,
        maxMessageFrames: int = 1024,
        slowConsumerTimeout: float = 30.0,
        sessionPrefix: str = "",
        origins: OriginPolicy | None = None,
        limits: ConnectionLimits | None = None,
        clientRate: RateLimit | None = None,
    ) -> None:
        WebSocketServerFactory.__init__(self, server=server)
        #: which pages may connect (the protocol asks it; Autobahn's own
        #: matcher is left admitting every well-formed origin)
        self.origins = origins or OriginPolicy()
        self.maxMessageSize = maxMessageSize
        self.maxMessageFrames = maxMessageFrames
        self.setProtocolOptions(**strictOptions(maxMessageSize))
        self.authenticator = authenticator
        self.strategy = strategy
        self.router = router
        #: the router's (given, like every collaborator: C{realtime.wiring})
        self.registry = registry
        self.fanout = fanout
        self.wheel = wheel
        #: the reactor's clock, for timestamps
        self.clock = clock
        self.writer = writer
        self.maxQueuedBytes = maxQueuedBytes
        self.slowConsumerTimeout = slowConsumerTimeout
        #: connections in all, per address and per uid (none by default)
        self.limits = limits or ConnectionLimits()
        #: messages per second each connection may send, or C{None}
        self.clientRate = clientRate
        self._sessionPrefix = sessionPrefix
        self._sessionCounter = 0
        self.authFailures: dict[str, int] = {}
        self.slowConsumers = 0
        self.openedSessions = 0

    _configured: type | None = None

    def setProtocolOptions(self, *args: Any, **options: Any) -> None:
        """
        Autobahn's, then forget the configured protocol class.

        Autobahn resets C{allowNullOrigin} to C{False} on every call that
        does not give it: it stays C{True}, since C{self.origins} decides.
        """
        options.setdefault("allowNullOrigin", True)
        WebSocketServerFactory.setProtocolOptions(self, *args, **options)
        self._configured = None

    def buildProtocol(self, addr: Any) -> RealtimeServerProtocol:
        """
        A protocol of a class that carries this factory's options itself
        (L{configuredClass}).
        """
        configured = self._configured
        if configured is None:
            configured = self._configured = configuredClass(self.protocol, self)
        protocol = configured()
        protocol.factory = self
        return protocol

    def nextSessionId(self) -> str:
        """
        A session id unique within this process.
        """
        self._sessionCounter += 1
        return f"{self._sessionPrefix}{self._sessionCounter:x}"

    def sessionOpened(self, session: ISession) -> None:
        """
        An authenticated session joins the router.
        """
        self.openedSessions += 1
        self.router.sessionOpened(session)

    def sessionClosed(self, session: ISession) -> None:
        """
        A session leaves the router.
        """
        self.router.sessionClosed(session)

    def countAuthFailure(self, reason: str) -> None:
        """
        Count a refused authentication by its reason.
        """
        self.authFailures[reason] = self.authFailures.get(reason, 0) + 1

    def countSlowConsumer(self) -> None:
        """
        Count a session dropped for not reading.
        """
        self.slowConsumers += 1
