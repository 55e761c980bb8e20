"""
The worker's side of C{--workers}: what the parent handed over, and how a
worker serves it and notices the parent is gone.

The parent starts each worker with its listening sockets as inherited
descriptors and, in C{REALTIME_WORKER}, which descriptor is which option's
(L{Handoff}).  A worker adopts each socket (C{reactor.adoptStreamPort},
through L{AdoptedStreamServerEndpoint}) instead of listening itself; a TLS
option's socket is wrapped in TLS here, with the certificate the option
names, exactly as C{reactor.listenSSL} wraps a port it binds.

The worker's standard input is a pipe whose other end only the parent
holds: when the parent ends, however it ends (SIGKILL included), the pipe
reads end-of-file and the worker stops (L{WatchParent}) instead of serving
on, unsupervised, forever.  Python has no portable C{PR_SET_PDEATHSIG}; a
pipe is the portable way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.fdesc import setNonBlocking
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReadDescriptor, IStreamServerEndpoint
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ENVIRONMENT", "Handoff", "adoptedEndpoint", "ParentWatch", "WatchParent", "ignoreInterrupts"]

log = Logger()

#: the environment variable that makes a ``twistd realtime`` a worker
ENVIRONMENT = "REALTIME_WORKER"

#: the address families a handed-over socket may have, by name
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}


@dataclass(frozen=True)
class Handoff:
    """
    What one worker was given.

    @ivar index: which worker this is, from 1 (kept across restarts).
    @ivar count: how many workers the parent runs.
    @ivar parent: the descriptor whose end-of-file says the parent is gone.
    @ivar sockets: option (C{port}, C{api-port}, ...) -> (descriptor,
        address family name, a key of L{FAMILIES}).
    """

    index: int
    count: int
    parent: int
    sockets: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def encode(self) -> str:
        """
        The value of L{ENVIRONMENT} that L{decode} reads back.
        """
        return json.dumps(
            {"index": self.index, "count": self.count, "parent": self.parent, "sockets": dict(self.sockets)},
            sort_keys=True,
        )

    @classmethod
    def decode(cls, text: str) -> Handoff:
        """
        Read L{encode}'s text.

        @raise ValueError: if it is not what a parent writes.
        """
        try:
            data = json.loads(text)
            sockets = {str(k): (int(fd), str(family)) for k, (fd, family) in data["sockets"].items()}
            handoff = cls(int(data["index"]), int(data["count"]), int(data["parent"]), sockets)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{ENVIRONMENT} is not what a realtime parent sets ({e!r}): {text!r}") from None
        unknown = {family for _, family in sockets.values()} - set(FAMILIES)
        if unknown:
            raise ValueError(f"{ENVIRONMENT} names unknown address families {sorted(unknown)}")
        return handoff

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str]) -> Handoff | None:
        """
        The handoff of this process, if it was started as a worker.
        """
        text = environ.get(ENVIRONMENT)
        return None if text is None else cls.decode(text)


def tlsContext(description: str) -> Any:
    """
    The TLS context factory a C{ssl:} endpoint description would listen
    with (its certificate and options), or C{None} for a plain endpoint.

    Twisted's own parser reads the description, against a reactor that only
    records what it is asked to do, so every TLS option the endpoint string
    accepts means here what it means to C{twistd}.
    """
    if not description.startswith("ssl:"):
        return None
    recorder = MemoryReactor()
    serverFromString(recorder, description).listen(_Unused())
    if recorder.sslServers:
        return recorder.sslServers[0][2]
    return None


@implementer(IProtocolFactory)
class _Unused:
    """
    The factory handed to a recording reactor: never asked for a protocol.
    """

    def buildProtocol(self, addr: Any) -> None:
        return None

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass


@implementer(IStreamServerEndpoint)
class TLSAdoptedEndpoint:
    """
    An adopted plain socket that serves TLS: what C{listenSSL} builds over
    the TCP port it binds, over a port the parent bound.
    """

    def __init__(self, adopted: IStreamServerEndpoint, contextFactory: Any) -> None:
        self._adopted = adopted
        self._contextFactory = contextFactory

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Adopt the socket, with TLS in front of C{protocolFactory}.
        """
        listening: Deferred[IListeningPort] = self._adopted.listen(
            TLSMemoryBIOFactory(self._contextFactory, False, protocolFactory)
        )
        return listening


def adoptedEndpoint(reactor: Any, description: str, fileno: int, family: str) -> IStreamServerEndpoint:
    """
    The endpoint a worker serves C{description} on: the handed-over socket
    C{fileno}, in TLS if C{description} is a TLS endpoint.
    """
    adopted = AdoptedStreamServerEndpoint(reactor, fileno, FAMILIES[family])
    contextFactory = tlsContext(description)
    if contextFactory is None:
        return adopted
    return TLSAdoptedEndpoint(adopted, contextFactory)


@implementer(IReadDescriptor)
class ParentWatch:
    """
    Reads the parent's pipe; end-of-file (or an error) means the parent is
    gone, and C{gone} is called once.
    """

    def __init__(self, fileno: int, gone: Callable[[], None]) -> None:
        self._fileno = fileno
        self._gone: Callable[[], None] | None = gone
        setNonBlocking(fileno)

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return "ParentWatch"

    def doRead(self) -> None:
        """
        Drain the pipe (the parent writes nothing); end-of-file calls C{gone}.
        """
        try:
            data = os.read(self._fileno, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data and self._gone is not None:
            gone, self._gone = self._gone, None
            gone()
        return None

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor gave the descriptor up: nothing to clean, the pipe is
        closed with the process.
        """


class WatchParent(Service):
    """
    Stops the reactor (a graceful stop: sessions are closed with 1001) when
    the parent's pipe closes.
    """

    def __init__(self, reactor: Any, fileno: int) -> None:
        self._reactor = reactor
        self._watch = ParentWatch(fileno, self._parentGone)

    def _parentGone(self) -> None:
        self._reactor.removeReader(self._watch)
        if self.running:
            log.warn("the realtime parent process is gone; this worker stops")
            self._reactor.stop()

    def startService(self) -> None:
        Service.startService(self)
        self._reactor.addReader(self._watch)

    def stopService(self) -> None:
        Service.stopService(self)
        self._reactor.removeReader(self._watch)


def ignoreInterrupts() -> None:
    """
    Leave SIGINT to the parent.

    A Ctrl-C at a terminal reaches the whole process group, the workers
    too; the parent answers it by stopping every worker in order (SIGTERM,
    then waiting), so a worker stopping on its own as well would only race
    it.  Set before the reactor runs: Twisted keeps a SIGINT handler it did
    not install.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
