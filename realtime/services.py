"""
The services that run the core, besides its listeners: pruning and
closing the store, closing every session at shutdown, the startup report,
and the whole server as one C{MultiService}.

They are built with the core (C{realtime.wiring.buildCore}), since parts of
it read them (readiness asks whether the sessions are being closed), and
started by C{twistd} through C{realtime.tap.makeService}.
"""

from __future__ import annotations

from typing import IO, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger

from realtime import closecodes
from realtime.core.registry import SessionRegistry
from realtime.delivery.timers import TimeoutWheel
from realtime.interfaces import IMessageStore
from realtime.push.offline import OfflineQueues
from realtime.store.health import logUnlessKnown

__all__ = ["StoreService", "SessionsService", "StartupReport", "RealtimeService", "BrokerService"]

log = Logger()


class StoreService(Service):
    """
    Prunes expired history and offline messages once a minute, and closes
    the store after everything else has stopped.
    """

    def __init__(
        self,
        store: IMessageStore,
        reactor: Any,
        offline: OfflineQueues | None,
        interval: float = 60.0,
        lock: IO[bytes] | None = None,
    ) -> None:
        self._store = store
        self._lock = lock
        self._offline = offline
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
        if self._offline is not None:
            self._offline.stop()
        return self._store.close().addBoth(self._unlock)

    def _unlock(self, result: object) -> object:
        # only once the store is closed may another server open it
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return result


class BrokerService(Service):
    """
    Joins a broker of several nodes to its cluster at start, and leaves at
    stop (after the sessions are closed: it is started before them).

    A Redis that cannot be reached at start does not stop the server: its
    sessions are served locally meanwhile, C{/readyz} says why it is not
    ready, and joining is tried again every C{retry} seconds.
    """

    def __init__(self, broker: Any, reactor: Any, retry: float = 1.0) -> None:
        self._broker = broker
        self._reactor = reactor
        self._retry = retry
        self._pending: Any = None

    def startService(self) -> None:
        Service.startService(self)
        self._join()

    def _join(self) -> None:
        self._pending = None

        def failed(reason: Any) -> None:
            log.warn("joining the Redis cluster failed ({why}); trying again", why=reason.getErrorMessage())
            if self.running:
                self._pending = self._reactor.callLater(self._retry, self._join)

        self._broker.start().addErrback(failed)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        stopped: Deferred[None] = self._broker.stop()
        return stopped


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

    def setServiceParent(self, parent: Any) -> Any:
        """
        Join the application, and set its log observer if we have one.
        """
        if self.logObserver is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.logObserver)
        return MultiService.setServiceParent(self, parent)
