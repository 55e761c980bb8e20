"""
``twistd realtime``: the twistd entry point.

C{Options} (in C{realtime.config.options}) parses and checks every value;
C{realtime.wiring.buildCore} builds the parts and connects them;
C{makeService} adds the listeners and the services around that core.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python import usage

from realtime.config.defaults import ENDPOINTS
from realtime.config.options import Options, loadApiKey
from realtime.ops.logs import observerFor
from realtime.services import RealtimeService
from realtime.websocket._autobahn.endpoints import StrictEndpointService
from realtime.wiring import Core, acceptDeflate, buildCore
from realtime.workers.handoff import Handoff, WatchParent, adoptedEndpoint, ignoreInterrupts
from realtime.workers.supervisor import WorkerSupervisor, exitCleanlyOnSignals, workerCommand

__all__ = ["Options", "makeService", "buildService", "addListeners", "RealtimeService", "acceptDeflate"]

log = Logger()


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

    def __init__(
        self,
        reactor: Any,
        option: str,
        description: str,
        factory: IProtocolFactory,
        ports: dict[str, Any] | None = None,
        endpoint: IStreamServerEndpoint | None = None,
    ) -> None:
        """
        @param ports: where to record the bound port, under C{option}.
        @param endpoint: what to listen on instead of C{description}'s
            endpoint (a worker's socket from its parent); C{description}
            still names it in messages.
        """
        if endpoint is None:
            endpoint = serverFromString(reactor, withBacklog(description))
        StreamServerEndpointService.__init__(self, endpoint, factory)
        self.option = option
        self.description = description
        self.port: Any = None
        self._ports = ports

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
        if self._ports is not None:
            self._ports[self.option] = port
        host = port.getHost()
        address = f"{host.host}:{host.port}" if hasattr(host, "port") else str(getattr(host, "name", host))
        log.info("--{option} listening on {address}", option=self.option, address=address)
        return port


def addListeners(core: Core, options: Options, service: MultiService, handoff: Handoff | None = None) -> None:
    """
    Add a listener for each port the options ask for: C{--port} (WebSocket
    and the web pages), C{--api-port} (the HTTP API), C{--push-port} (the
    line port), each on its endpoint, or on the socket a worker's parent
    bound for it.
    """
    for option, factory in (("port", core.web), ("api-port", core.api), ("push-port", core.line)):
        if factory is not None:
            endpoint = None
            if handoff is not None and option in handoff.sockets:
                endpoint = adoptedEndpoint(core.reactor, options[option], *handoff.sockets[option])
            Listener(core.reactor, option, options[option], factory, core.ports, endpoint).setServiceParent(service)


def makeService(options: Options) -> MultiService:
    """
    Build the server from checked options.

    A plugin that refuses its options stops the start with the error alone
    and exit status 1, as a bad option of ours does (C{Options.parseOptions}).
    """
    from twisted.internet import reactor

    if options["workers"] > 1:
        return buildSupervisor(options, reactor)
    try:
        service = buildService(options, reactor)
    except usage.UsageError as e:
        if getattr(options, "parent", None) is None:
            raise
        print(f"twistd realtime: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if options["log-format"] == "json":
        service.logObserver = observerFor(getattr(options, "parent", None))
    return service


def buildService(options: Options, reactor: IReactorTime) -> RealtimeService:
    """
    The whole server on C{reactor}: the core, its services, its listeners.
    """
    core = buildCore(options, reactor)
    top = RealtimeService()
    for child in core.services:
        child.setServiceParent(top)
    handoff: Handoff | None = options["worker"]
    addListeners(core, options, top, handoff)
    if handoff is not None:
        ignoreInterrupts()
        WatchParent(reactor, handoff.parent).setServiceParent(top)
        core.report.notes.append(f"worker {handoff.index} of {handoff.count} (pid {os.getpid()}), on the sockets of its parent")
    core.report.setServiceParent(top)
    return top


def buildSupervisor(options: Options, reactor: Any) -> RealtimeService:
    """
    The parent of C{--workers N}: it binds every listening option and runs
    N workers on those sockets (L{realtime.workers.supervisor}), and no
    session of its own.

    The API key file is created here, once, before any worker reads it:
    workers each creating it would race and disagree on the key.
    """
    if options["api-port"] != "none" and options["api-key"] is None:
        loadApiKey(options["api-key-file"])
    # the parent never accepts (the workers do): its factory is never used
    unused = Factory.forProtocol(Protocol)
    unused.noisy = False
    listeners = {
        option: Listener(reactor, option, options[option], unused) for option in ENDPOINTS if options[option] != "none"
    }
    parent = getattr(options, "parent", None)
    command = workerCommand(options.arguments, parent)
    top = RealtimeService()
    WorkerSupervisor(reactor, options["workers"], command, os.environ, listeners).setServiceParent(top)
    if parent is not None:
        exitCleanlyOnSignals(reactor)
    if options["log-format"] == "json":
        top.logObserver = observerFor(parent)
    return top
