"""
The one place where the server's parts are built and connected to each other.

C{buildCore(options, reactor)} turns checked options (C{realtime.config.options},
which only parses and checks) into the server's objects, each given what it
needs when it is built: nothing is patched on afterwards, and nothing builds
its own collaborators.  C{realtime.tap} adds the listeners and hands the
whole to twistd; the tests build their servers with the same functions
(C{buildCore} whole, or L{buildRouter} for the push path alone), so what they
test is wired as what runs.

It is a module of its own, not C{tap.py}, because it is not the twistd entry
point and has no I/O of its own beyond opening the store: binding ports is
C{realtime.tap.addListeners}'s, starting services twistd's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from realtime.api.cors import CorsPolicy
from realtime.api.http import ApiCounters, buildApiSite
from realtime.api.lineproto import LinePushFactory
from realtime.api.site import ApiSite
from realtime.broker.memory import MemoryBroker
from realtime.config.backends import isRedis
from realtime.config.discovery import checkBuilt, pluginWarnings
from realtime.config.options import Options, loadApiKey
from realtime.core.limits import ConnectionLimits
from realtime.core.namespaces import NamespaceRules
from realtime.core.registry import SessionRegistry
from realtime.delivery.fanout import Fanout
from realtime.delivery.keepalive import Keepalive
from realtime.delivery.timers import TimeoutWheel
from realtime.delivery.writer import TurnWriter
from realtime.interfaces import (
    IAuthenticator,
    IBackupSource,
    IBatchBroker,
    IBroker,
    IMessageStore,
    IPushFraming,
    IRoutingStrategy,
)
from realtime.ops.gctuning import GCTuning
from realtime.ops.instrument import CountingStrategy, InstrumentedPublisher, LatencyHistogram
from realtime.ops.metrics import ReactorLag, ServerCounters, buildMetricsRegistry
from realtime.ops.probes import HealthResource, MetricsResource, PageConfigResource, ReadyResource, pageDescription
from realtime.push.channels import ChannelService
from realtime.push.offline import OfflineQueues
from realtime.push.router import ChannelPublisher, Router
from realtime.routing.context import RoutingContext, buildStrategy
from realtime.services import BrokerService, SessionsService, StartupReport, StoreService
from realtime.store.health import MonitoredStore
from realtime.store.lock import lockStore
from realtime.store.memory import MemoryMessageStore
from realtime.values import OfflineLimits
from realtime.web.sharedport import SharedPortFactory
from realtime.web.site import buildWebSite
from realtime.websocket._autobahn.logs import setAutobahnLogLevel
from realtime.websocket.factory import RealtimeServerFactory

__all__ = ["Core", "buildCore", "buildAuthenticator", "buildRouting", "buildChannels", "buildRouter", "openStore"]

Framing = Callable[[bytes, bool], "tuple[bytes, bool]"]


@dataclass(frozen=True)
class Core:
    """
    One server's parts, connected: what the listeners serve and the
    services run.

    @ivar broker: the broker under the router, whose C{problem} readiness
        and the metrics report.
    @ivar router: what the HTTP API and the line port push through.
    @ivar factory: the WebSocket factory.
    @ivar web: what C{--port} serves (WebSocket and the web pages, one port).
    @ivar api: the HTTP API's site, or C{None} with C{--api-port none}.
    @ivar line: the line port's factory, or C{None} with C{--push-port none}.
    @ivar services: everything to run besides the listeners, in start order.
    @ivar report: the startup report, started after the listeners.
    @ivar ports: each listening option's bound port, once bound (the demo
        page's C{/config.json} reads the API's).
    """

    reactor: Any
    registry: SessionRegistry
    fanout: Fanout
    wheel: TimeoutWheel
    store: IMessageStore
    broker: IBroker
    router: Router
    authenticator: IAuthenticator
    strategy: CountingStrategy
    factory: RealtimeServerFactory
    latency: LatencyHistogram
    counters: ServerCounters
    ready: ReadyResource
    web: SharedPortFactory
    api: ApiSite | None
    line: LinePushFactory | None
    services: tuple[IService, ...]
    report: StartupReport
    ports: dict[str, Any] = field(default_factory=dict)


def acceptDeflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """
    Accept the client's first permessage-deflate offer, with its parameters.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def openStore(spec: str, reactor: Any) -> IMessageStore:
    """
    The store ``--store`` names: C{memory}, C{sqlite:PATH} or a Redis URL,
    watched (L{MonitoredStore}: logged once per failure and recovery, for
    /readyz).
    """
    if spec == "memory":
        return MonitoredStore(MemoryMessageStore())
    if isRedis(spec):
        from realtime.store.redis import RedisMessageStore

        return MonitoredStore(RedisMessageStore.fromURL(spec, reactor))
    from realtime.store.sqlite import SQLiteMessageStore

    return MonitoredStore(SQLiteMessageStore(spec[len("sqlite:") :], reactor))


def buildBroker(spec: str, reactor: Any, registry: SessionRegistry, fanout: Fanout) -> IBroker:
    """
    The broker ``--broker`` names: this process's (C{memory}), or one over
    Redis that every node shares.
    """
    if spec == "memory":
        return MemoryBroker(registry, fanout)
    from realtime.broker.redis import RedisBroker

    return RedisBroker.fromURL(spec, reactor, registry, fanout)


def shareHistory(brokerSpec: str, broker: IBroker, storeSpec: str, store: IMessageStore, rules: NamespaceRules) -> None:
    """
    With C{--broker} and C{--store} naming the same Redis, let the broker
    keep channel history in the store itself: one script appends and
    publishes each channel message (offset order on every node), and the
    broker notices the messages pub/sub lost (C{realtime.broker.redisgaps}).
    Every other combination keeps the channel publisher's two steps.
    """
    if brokerSpec != storeSpec or not isRedis(storeSpec) or not isinstance(store, MonitoredStore):
        return
    from realtime.broker.redis import RedisBroker
    from realtime.store.redis import RedisMessageStore

    if isinstance(broker, RedisBroker) and isinstance(store.inner, RedisMessageStore):
        broker.keepHistoryIn(store.inner, store.watch, lambda channel: rules.match(channel).history > 0)


def buildAuthenticator(options: Options, reactor: Any) -> IAuthenticator:
    """
    Build the auth plugin the options found, and check what it built
    against every interface it declares.

    @raise usage.UsageError: naming the option when the plugin refuses its
        options, as C{Options} refuses its own, or built a broken object.
    """
    try:
        authenticator: IAuthenticator = options["auth-factory"].buildAuthenticator(options["auth-options"], reactor)
    except ValueError as e:
        raise usage.UsageError(f"--auth {e}") from None
    checkBuilt("auth", options["auth-factory"], authenticator)
    return authenticator


def buildRouting(options: Options, reactor: Any, context: RoutingContext) -> IRoutingStrategy:
    """
    Build the routing plugin the options found, in C{context} if it asks
    for one (C{IRoutingContextUser}).

    @raise usage.UsageError: naming the option when the plugin refuses its
        options, or built a broken object.
    """
    try:
        strategy = buildStrategy(options["routing-factory"], options["routing-options"], reactor, context)
    except ValueError as e:
        raise usage.UsageError(f"--routing {e}") from None
    checkBuilt("routing", options["routing-factory"], strategy)
    return strategy


def buildChannels(
    reactor: Any,
    registry: SessionRegistry,
    broker: IBroker,
    store: IMessageStore | None,
    rules: NamespaceRules,
    authorizer: object = None,
) -> tuple[ChannelPublisher, ChannelService]:
    """
    The channel publisher (history, then live) and the channel service that
    clients' channel requests reach; built before the routing strategy,
    which may need the service (C{IRoutingContext}), and the router, which
    needs the strategy's framing.
    """
    publisher = ChannelPublisher(reactor, broker, store, rules)
    return publisher, ChannelService(reactor, registry, broker, store, rules, publisher.publish, authorizer)


def buildRouter(
    reactor: Any,
    registry: SessionRegistry,
    broker: IBroker,
    fanout: Fanout,
    store: IMessageStore | None,
    rules: NamespaceRules,
    offline: OfflineLimits | None,
    authorizer: object = None,
    framePush: Framing | None = None,
    channels: tuple[ChannelPublisher, ChannelService] | None = None,
    sharedStore: bool = False,
) -> Router:
    """
    The router and its parts over C{broker}: the offline queues (if
    C{offline} and a store are given) and the channels (L{buildChannels}'s,
    built here unless given).

    @param fanout: the broker's: offline queueing then shares its budget
        per reactor turn and its order (see L{Fanout.each}).
    @param framePush: the routing's framing of backend pushes, if any.
    @param sharedStore: whether other nodes use the store too (L{OfflineQueues}).
    """
    publisher, service = channels or buildChannels(reactor, registry, broker, store, rules, authorizer)
    queues = None
    if offline is not None and store is not None:
        framing: Framing = framePush if framePush is not None else (lambda payload, isBinary: (payload, isBinary))
        queues = OfflineQueues(reactor, registry, broker, store, offline, framing, fanout, shared=sharedStore)
    return Router(registry, broker, service, publisher, queues, framePush, store)


def buildWebSocketFactory(
    options: Options,
    reactor: Any,
    authenticator: IAuthenticator,
    strategy: IRoutingStrategy,
    router: Router,
    fanout: Fanout,
    wheel: TimeoutWheel,
) -> RealtimeServerFactory:
    """
    The WebSocket factory, with the options' limits and Autobahn's options
    as this server uses them.
    """
    factory = RealtimeServerFactory(
        authenticator,
        strategy,
        router,
        fanout,
        wheel,
        TurnWriter(reactor),
        registry=router.registry,
        clock=reactor,
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
    factory.setProtocolOptions(
        # pings come from one Keepalive timer, not a timer per connection
        autoPingInterval=0,
        # the front port reads the whole request head (under its own
        # timeout) before Autobahn sees it; slow authenticators have theirs
        openHandshakeTimeout=0,
        perMessageCompressionAccept=acceptDeflate,
    )
    return factory


def _apiKey(options: Options, notes: list[str]) -> str:
    if options["api-key"] is not None:
        return str(options["api-key"])
    apiKey, created = loadApiKey(options["api-key-file"])
    notes.append(
        f"HTTP API key {'generated into' if created else 'read from'} {options['api-key-file']} "
        "(send it as 'Authorization: Bearer <key>')"
    )
    return apiKey


def buildCore(options: Options, reactor: IReactorTime) -> Core:
    """
    Every part of the server, built from checked options and connected.

    Nothing listens and nothing runs yet: C{realtime.tap.addListeners} binds
    the ports, and the core's C{services} are started by their parent.

    @raise usage.UsageError: when a plugin refuses its options.
    """
    setAutobahnLogLevel("info")
    authenticator = buildAuthenticator(options, reactor)
    registry = SessionRegistry()
    wheel = TimeoutWheel(reactor)
    fanout = Fanout(reactor)
    broker = buildBroker(options["broker"], reactor, registry, fanout)
    rules = options["namespace-rules"]
    lock: IO[bytes] | None = lockStore(options["store"])
    store = openStore(options["store"], reactor)
    shareHistory(options["broker"], broker, options["store"], store, rules)
    # the channels first: a routing strategy may need them, and the router
    # needs the strategy's framing
    channels = buildChannels(reactor, registry, broker, store, rules, authenticator)
    strategy = buildRouting(options, reactor, RoutingContext(registry, channels[1]))
    offline = OfflineLimits(options["offline-max"], options["offline-ttl"]) if options["offline-ttl"] > 0 else None
    framePush = strategy.framePush if IPushFraming.providedBy(strategy) else None
    router = buildRouter(
        reactor, registry, broker, fanout, store, rules, offline, authenticator, framePush, channels,
        sharedStore=isRedis(options["store"]),
    )
    counting = CountingStrategy(strategy)
    factory = buildWebSocketFactory(options, reactor, authenticator, counting, router, fanout, wheel)
    latency = LatencyHistogram()
    line = None
    if options["push-port"] != "none":
        line = LinePushFactory(
            InstrumentedPublisher(router, "line", latency, reactor),
            options["max-message-size"],
            factory.writer,
            options["max-uids-per-push"],
            batched=IBatchBroker.providedBy(broker),
        )
        line.noisy = False
    apiCounts = ApiCounters() if options["api-port"] != "none" else None
    lag = ReactorLag(reactor)
    counters = ServerCounters(
        authName=options["auth-name"],
        routingName=options["routing-name"],
        brokerName="memory" if options["broker"] == "memory" else "redis",
        broker=broker,
        router=router,
        fanout=fanout,
        factory=factory,
        strategy=counting,
        latency=latency,
        line=line,
        api=apiCounts,
        lag=lag,
    )
    notes: list[str] = []
    api = None
    if apiCounts is not None:
        publisher = InstrumentedPublisher(router, "http", latency, reactor, counters.snapshot)
        api = buildApiSite(
            publisher,
            _apiKey(options, notes),
            options["max-message-size"],
            reactor,
            CorsPolicy(options["api-cors-origin"]),
            options["head-timeout"],
            options["max-uids-per-push"],
            options["api-rate-limit"],
            IBackupSource(store, None),
            apiCounts,
        )
        api.noisy = False
    sessions = SessionsService(reactor, registry, wheel)
    ready = ReadyResource(reactor, broker, store, lambda: not sessions.running)
    ports: dict[str, Any] = {}
    front = _buildWeb(options, reactor, factory, wheel, counters, ready, ports)
    notes.append(f"auth {options['auth-name']}, routing {options['routing-name']}")
    services: tuple[IService, ...] = (
        GCTuning(),
        StoreService(store, reactor, router.offline, lock=lock),
        *([] if isinstance(broker, MemoryBroker) else [BrokerService(broker, reactor)]),
        Keepalive(reactor, registry, options["ping-interval"]),
        sessions,
        lag,
    )
    report = StartupReport(_warnings(options, authenticator, strategy), options["plugin-problems"], notes)
    return Core(
        reactor=reactor,
        registry=registry,
        fanout=fanout,
        wheel=wheel,
        store=store,
        broker=broker,
        router=router,
        authenticator=authenticator,
        strategy=counting,
        factory=factory,
        latency=latency,
        counters=counters,
        ready=ready,
        web=front,
        api=api,
        line=line,
        services=services,
        report=report,
        ports=ports,
    )


def _buildWeb(
    options: Options,
    reactor: Any,
    factory: RealtimeServerFactory,
    wheel: TimeoutWheel,
    counters: ServerCounters,
    ready: ReadyResource,
    ports: dict[str, Any],
) -> SharedPortFactory:
    """
    What C{--port} serves: WebSocket, and the pages and probes beside it.
    """
    web = {
        b"metrics": MetricsResource(buildMetricsRegistry(counters)),
        b"healthz": HealthResource(),
        b"readyz": ready,
        b"config.json": PageConfigResource(pageDescription(options, ports)),
    }
    headTimeout = options["head-timeout"]
    return SharedPortFactory(factory, buildWebSite(factory, reactor, web, headTimeout), wheel, headTimeout)


def _warnings(options: Options, authenticator: IAuthenticator, strategy: IRoutingStrategy) -> list[str]:
    """
    What is insecure: what the plugins that provide C{IWarnings} say, and
    backend ports open to every interface.
    """
    warnings = pluginWarnings(authenticator, strategy)
    for option in ("api-port", "push-port"):
        description = options[option]
        if description != "none" and "interface=" not in description and not description.startswith("unix:"):
            warnings.append(f"--{option} {description} listens on every interface; anyone who can reach it can push")
    return warnings
