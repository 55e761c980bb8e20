"""
``twistd realtime``: the one place where the parts are wired together.

C{Options} (in C{realtime.options}) has already checked every value and built
the chosen auth and routing plugins; C{makeService} connects them to the
registry, the fan-out, the broker and the three listeners.
"""

from __future__ import annotations

import secrets
from typing import Any

import txaio
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from realtime import closecodes
from realtime.api.http import buildApiSite
from realtime.api.lineproto import LinePushFactory
from realtime.broker.memory import MemoryBroker
from realtime.delivery import Fanout
from realtime.options import Options, loadApiKey
from realtime.protocol import RealtimeServerFactory
from realtime.registry import SessionRegistry
from realtime.timers import TimeoutWheel
from realtime.web.front import FrontFactory
from realtime.web.site import buildWebSite

__all__ = ["Options", "makeService"]

log = Logger()


def acceptDeflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """
    Accept the client's first permessage-deflate offer, with its parameters.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class Listener(StreamServerEndpointService):
    """
    Listens on one option's endpoint; a port that cannot be bound stops the
    start with a message naming the option, instead of a server that runs
    without it.
    """

    _raiseSynchronously = True

    def __init__(self, reactor: Any, option: str, description: str, factory: IProtocolFactory) -> None:
        StreamServerEndpointService.__init__(self, serverFromString(reactor, description), factory)
        self.option = option
        self.description = description
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """
        Bind now, and log the address actually bound (``tcp:0`` picks one).
        """
        try:
            StreamServerEndpointService.privilegedStartService(self)
        except Exception as e:
            raise SystemExit(f"realtime: cannot listen on --{self.option} {self.description}: {e}") from None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        self.port = port
        host = port.getHost()
        address = f"{host.host}:{host.port}" if hasattr(host, "port") else str(getattr(host, "name", host))
        log.info("--{option} listening on {address}", option=self.option, address=address)
        return port


class SessionsService(Service):
    """
    Tells every client the server is going away (close 1001) at shutdown,
    and gives them a moment to close cleanly.
    """

    def __init__(self, reactor: IReactorTime, registry: SessionRegistry, wheel: TimeoutWheel, grace: float = 3.0) -> None:
        self._reactor = reactor
        self._registry = registry
        self._wheel = wheel
        self._grace = grace

    def stopService(self) -> Deferred[None] | None:
        """
        Close every session, wait until they are gone or the grace is up.
        """
        Service.stopService(self)
        sessions = self._registry.allSessions()
        for session in sessions:
            session.close(closecodes.GOING_AWAY, "server shutting down")
        if not sessions:
            self._wheel.stop()
            return None
        done: Deferred[None] = Deferred()
        deadline = self._reactor.seconds() + self._grace

        def check() -> None:
            if len(self._registry) == 0 or self._reactor.seconds() >= deadline:
                poll.stop()

        poll = LoopingCall(check)
        poll.clock = self._reactor
        poll.start(0.05, now=False).addCallback(lambda _: self._wheel.stop()).chainDeferred(done)
        return done


class StartupReport(Service):
    """
    Says loudly, once the reactor runs, what is insecure and what is broken.
    """

    def __init__(self, warnings: list[str], problems: list[str], notes: list[str]) -> None:
        self.warnings = warnings
        self.problems = problems
        self.notes = notes

    def startService(self) -> None:
        """
        Log everything the operator must know.
        """
        Service.startService(self)
        for note in self.notes:
            log.info("{note}", note=note)
        for problem in self.problems:
            log.error("plugin problem: {problem}", problem=problem)
        for warning in self.warnings:
            log.warn("*" * 72)
            log.warn("INSECURE: {warning}", warning=warning)
            log.warn("*" * 72)


def makeService(options: Options) -> MultiService:
    """
    Build the server from checked options.
    """
    from twisted.internet import reactor

    return buildService(options, reactor)


def buildService(options: Options, reactor: IReactorCore) -> MultiService:
    """
    L{makeService} with the reactor given, for tests.
    """
    # Autobahn logs every frame at debug level through txaio; twistd's log
    # observer keeps everything, so set the level where txaio filters.
    txaio.set_global_log_level("info")
    notes: list[str] = []
    warnings = list(options["authenticator"].warnings())
    registry = SessionRegistry()
    wheel = TimeoutWheel(reactor)
    fanout = Fanout(reactor)
    broker = MemoryBroker(registry, fanout)

    factory = RealtimeServerFactory(
        options["authenticator"],
        options["strategy"],
        registry,
        fanout,
        wheel,
        maxQueuedBytes=options["max-queued-bytes"],
        maxMessageSize=options["max-message-size"],
        sessionPrefix=secrets.token_hex(3) + ".",
    )
    ping = options["ping-interval"]
    factory.setProtocolOptions(
        autoPingInterval=ping,
        autoPingTimeout=ping,
        perMessageCompressionAccept=acceptDeflate,
        allowedOrigins=options["allowed-origin"] or ["*"],
    )

    top = MultiService()
    SessionsService(reactor, registry, wheel).setServiceParent(top)
    front = FrontFactory(factory, buildWebSite(factory), wheel)
    Listener(reactor, "port", options["port"], front).setServiceParent(top)

    if options["api-port"] != "none":
        if options["api-key"] is not None:
            apiKey = options["api-key"]
        else:
            apiKey, created = loadApiKey(options["api-key-file"])
            notes.append(
                f"HTTP API key {'generated into' if created else 'read from'} {options['api-key-file']} "
                "(send it as 'Authorization: Bearer <key>')"
            )
        api = buildApiSite(broker, apiKey, options["max-message-size"], reactor)
        api.noisy = False
        Listener(reactor, "api-port", options["api-port"], api).setServiceParent(top)
    if options["push-port"] != "none":
        line = LinePushFactory(broker, options["max-message-size"])
        line.noisy = False
        Listener(reactor, "push-port", options["push-port"], line).setServiceParent(top)
    for option in ("api-port", "push-port"):
        description = options[option]
        if description != "none" and "interface=" not in description and not description.startswith("unix:"):
            warnings.append(f"--{option} {description} listens on every interface; anyone who can reach it can push")
    notes.append(f"auth {options['auth-name']}, routing {options['routing-name']}")
    StartupReport(warnings, options["plugin-problems"], notes).setServiceParent(top)

    top.registry = registry  # type: ignore[attr-defined]
    top.broker = broker  # type: ignore[attr-defined]
    top.factory = factory  # type: ignore[attr-defined]
    return top
