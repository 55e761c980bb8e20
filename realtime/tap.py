"""
``twistd realtime``: the one place where the parts are wired together.

C{Options} (in C{realtime.config.options}) has already checked every value and built
the chosen auth and routing plugins; C{makeService} connects them to the
registry, the fan-out, the broker and the three listeners.
"""

from __future__ import annotations

import secrets
from typing import IO, Any, Callable

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger

from realtime import closecodes
from realtime.api.cors import CorsPolicy
from realtime.api.http import buildApiSite
from realtime.api.lineproto import LinePushFactory
from realtime.broker.memory import MemoryBroker
from realtime.config.options import Options, loadApiKey
from realtime.core.limits import ConnectionLimits
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.keepalive import Keepalive
from realtime.delivery.timers import TimeoutWheel
from realtime.delivery.writer import TurnWriter
from realtime.interfaces import IBackupSource, IMessageStore, IPushFraming
from realtime.ops.gctuning import GCTuning
from realtime.ops.instrument import CountingStrategy, InstrumentedBroker, LatencyHistogram
from realtime.ops.logs import observerFor
from realtime.ops.metrics import ReactorLag, ServerCounters, buildMetricsRegistry
from realtime.ops.probes import HealthResource, MetricsResource, PageConfigResource, ReadyResource
from realtime.push.channels import ChannelService
from realtime.push.router import ChannelPublisher, Router
from realtime.routing.context import RoutingContext, buildStrategy
from realtime.store.health import MonitoredStore, logUnlessKnown
from realtime.store.lock import lockStore
from realtime.store.memory import MemoryMessageStore
from realtime.values import OfflineLimits
from realtime.web.sharedport import SharedPortFactory
from realtime.web.site import buildWebSite
from realtime.websocket._autobahn.endpoints import StrictEndpointService
from realtime.websocket._autobahn.logs import setAutobahnLogLevel
from realtime.websocket.factory import RealtimeServerFactory

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


#: the listen backlog when an endpoint string does not give one: Twisted's
#: default of 50 drops SYNs during a reconnect storm (every client of a
#: restarted server at once), and each dropped SYN costs its client a second
DEFAULT_BACKLOG = 1024


def withBacklog(description: str) -> str:
    """
    C{description} with C{backlog=DEFAULT_BACKLOG} added if it is a TCP,
    TLS or Unix endpoint without one.
    """
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


class Listener(StrictEndpointService):
    """
    Listens on one option's endpoint; a port that cannot be bound stops the
    start with a message naming the option, instead of a server that runs
    without it.
    """

    def __init__(self, reactor: Any, option: str, description: str, factory: IProtocolFactory) -> None:
        StreamServerEndpointService.__init__(self, serverFromString(reactor, withBacklog(description)), factory)
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
        self.whenListening().addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        self.port = port
        host = port.getHost()
        address = f"{host.host}:{host.port}" if hasattr(host, "port") else str(getattr(host, "name", host))
        log.info("--{option} listening on {address}", option=self.option, address=address)
        return port


def openStore(spec: str, reactor: Any) -> IMessageStore:
    """
    The store ``--store`` names: C{memory}, or C{sqlite:PATH}, watched
    (L{MonitoredStore}: logged once per failure and recovery, for /readyz).
    """
    if spec == "memory":
        return MonitoredStore(MemoryMessageStore())
    from realtime.store.sqlite import SQLiteMessageStore

    return MonitoredStore(SQLiteMessageStore(spec[len("sqlite:") :], reactor))


class StoreService(Service):
    """
    Prunes expired history and offline messages once a minute, and closes
    the store after everything else has stopped.
    """

    def __init__(
        self, store: IMessageStore, reactor: Any, router: Router, interval: float = 60.0, lock: IO[bytes] | None = None
    ) -> None:
        self._store = store
        self._lock = lock
        self._router = router
        self._reactor = reactor
        self._prune = LoopingCall(self._pruneNow)
        self._prune.clock = reactor
        self._interval = interval

    def _pruneNow(self) -> Deferred[None]:
        return self._store.prune(self._reactor.seconds()).addErrback(
            lambda f: logUnlessKnown(log, f, "pruning the message store failed")
        )

    def startService(self) -> None:
        """
        Start pruning.
        """
        Service.startService(self)
        self._prune.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:
        """
        Stop pruning and close the store.
        """
        Service.stopService(self)
        if self._prune.running:
            self._prune.stop()
        if self._router.offline is not None:
            self._router.offline.stop()
        return self._store.close().addBoth(self._unlock)

    def _unlock(self, result: object) -> object:
        # only once the store is closed may another server open it
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return result


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


class RealtimeService(MultiService):
    """
    The whole server.  With C{--log-format json} it hands twistd its log
    observer: twistd asks the application for an C{ILogObserver} component
    before starting to log, and this is the one moment a service made by a
    plugin can set it.
    """

    logObserver: Any = None

    #: what the server is made of, for tests and the debugger
    router: Any = None
    registry: Any = None
    broker: Any = None
    factory: Any = None
    counters: Any = None

    def setServiceParent(self, parent: Any) -> Any:
        """
        Join the application, and set its log observer if we have one.
        """
        if self.logObserver is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.logObserver)
        return MultiService.setServiceParent(self, parent)


def pageDescription(options: Options, apiListener: Listener | None) -> Callable[[], dict[str, Any]]:
    """
    What C{/config.json} tells the demo page: the plugins, the rules of its
    chat channel, and the HTTP API's port (the page still needs the key).
    """
    chat = options["namespace-rules"].match("chat:lobby")

    def describe() -> dict[str, Any]:
        port = getattr(getattr(apiListener, "port", None), "getHost", lambda: None)()
        return {
            "routing": options["routing-name"],
            "auth": options["auth-name"],
            "chat": {
                "channel": "chat:lobby",
                "public": chat.public,
                "publish": chat.publish,
                "presence": chat.presence,
                "history": chat.history,
            },
            "api": {"port": getattr(port, "port", None), "cors": bool(CorsPolicy(options["api-cors-origin"]).origins)},
        }

    return describe


def makeService(options: Options) -> MultiService:
    """
    Build the server from checked options.
    """
    from twisted.internet import reactor

    service = buildService(options, reactor)
    if options["log-format"] == "json":
        service.logObserver = observerFor(getattr(options, "parent", None))
    return service


def buildService(options: Options, reactor: IReactorTime) -> RealtimeService:
    """
    L{makeService} with the reactor given, for tests.
    """
    setAutobahnLogLevel("info")
    notes: list[str] = []
    warnings = list(options["authenticator"].warnings())
    registry = SessionRegistry()
    wheel = TimeoutWheel(reactor)
    fanout = Fanout(reactor)
    lock = lockStore(options["store"])
    store = openStore(options["store"], reactor)
    memoryBroker = MemoryBroker(registry, fanout)
    # the channel service first: a routing strategy may need it, and the
    # router needs the strategy's framing
    channelPublisher = ChannelPublisher(reactor, memoryBroker, store, options["namespace-rules"])
    channels = ChannelService(
        reactor,
        registry,
        memoryBroker,
        store,
        options["namespace-rules"],
        channelPublisher.publish,
        options["authenticator"],
    )
    strategy = options["strategy"]
    if strategy is None:
        try:
            strategy = buildStrategy(
                options["routing-factory"], options["routing-options"], reactor, RoutingContext(registry, channels)
            )
        except ValueError as e:
            raise SystemExit(f"realtime: --routing {e}") from None
    router = Router(
        reactor,
        registry,
        memoryBroker,
        store,
        options["namespace-rules"],
        OfflineLimits(options["offline-max"], options["offline-ttl"]) if options["offline-ttl"] > 0 else None,
        authorizer=options["authenticator"],
        framePush=strategy.framePush if IPushFraming.providedBy(strategy) else None,
        fanout=fanout,
        channels=channels,
        channelPublisher=channelPublisher,
    )
    broker = router
    counting = CountingStrategy(strategy)
    latency = LatencyHistogram()

    factory = RealtimeServerFactory(
        options["authenticator"],
        counting,
        router,
        fanout,
        wheel,
        TurnWriter(reactor),
        maxQueuedBytes=options["max-queued-bytes"],
        maxMessageSize=options["max-message-size"],
        maxMessageFrames=options["max-message-frames"],
        sessionPrefix=secrets.token_hex(3) + ".",
        origins=options["origin-policy"],
        limits=ConnectionLimits(
            options["max-connections"], options["max-connections-per-ip"], options["max-connections-per-uid"], options["proxy-trust"]
        ),
        clientRate=options["client-rate-limit"],
    )
    ping = options["ping-interval"]
    factory.setProtocolOptions(
        # pings come from one Keepalive timer, not a timer per connection
        autoPingInterval=0,
        # the front port reads the whole request head (under its own
        # timeout) before Autobahn sees it; slow authenticators have theirs
        openHandshakeTimeout=0,
        perMessageCompressionAccept=acceptDeflate,
    )

    counters = ServerCounters(
        authName=options["auth-name"],
        routingName=options["routing-name"],
        brokerName="memory",
        broker=broker,
        router=router,
        fanout=fanout,
        factory=factory,
        strategy=counting,
        latency=latency,
    )
    top = RealtimeService()
    GCTuning().setServiceParent(top)
    StoreService(store, reactor, router, lock=lock).setServiceParent(top)
    Keepalive(reactor, registry, ping).setServiceParent(top)
    sessions = SessionsService(reactor, registry, wheel)
    sessions.setServiceParent(top)
    counters.lag = ReactorLag(reactor)
    counters.lag.setServiceParent(top)
    apiListener: Listener | None = None
    web = {
        b"metrics": MetricsResource(buildMetricsRegistry(counters)),
        b"healthz": HealthResource(),
        b"readyz": ReadyResource(reactor, broker, store, lambda: not sessions.running),
        b"config.json": PageConfigResource(lambda: pageDescription(options, apiListener)()),
    }
    headTimeout = options["head-timeout"]
    front = SharedPortFactory(factory, buildWebSite(factory, reactor, web, headTimeout), wheel, headTimeout)
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
        apiBroker = InstrumentedBroker(broker, "http", latency, reactor, counters.snapshot)
        cors = CorsPolicy(options["api-cors-origin"])
        api = buildApiSite(
            apiBroker,
            apiKey,
            options["max-message-size"],
            reactor,
            cors,
            headTimeout,
            options["max-uids-per-push"],
            options["api-rate-limit"],
            IBackupSource(store, None),
        )
        api.noisy = False
        counters.api = api.api
        apiListener = Listener(reactor, "api-port", options["api-port"], api)
        apiListener.setServiceParent(top)
    if options["push-port"] != "none":
        line = LinePushFactory(
            InstrumentedBroker(broker, "line", latency, reactor),
            options["max-message-size"],
            factory.writer,
            options["max-uids-per-push"],
        )
        line.noisy = False
        counters.line = line
        Listener(reactor, "push-port", options["push-port"], line).setServiceParent(top)
    for option in ("api-port", "push-port"):
        description = options[option]
        if description != "none" and "interface=" not in description and not description.startswith("unix:"):
            warnings.append(f"--{option} {description} listens on every interface; anyone who can reach it can push")
    notes.append(f"auth {options['auth-name']}, routing {options['routing-name']}")
    StartupReport(warnings, options["plugin-problems"], notes).setServiceParent(top)

    top.router = router
    top.registry = registry
    top.broker = broker
    top.factory = factory
    top.counters = counters
    return top
