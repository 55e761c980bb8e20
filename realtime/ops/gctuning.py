"""
The cyclic garbage collector, tuned for a process that holds many
long-lived connections.

CPython runs a young-generation collection every 700 net allocations of
container objects, and a full one each time the old generation has grown by
a quarter.  A WebSocket handshake allocates dozens of containers and keeps
most of them for the connection's life, so while thousands of clients
connect the garbage collector runs every few handshakes and walks ever more
long-lived objects: some 30% of the Python time of a handshake, measured
in-process with 10,000 connections open (bench/README.rst).  Almost all of a
push server's garbage is freed by reference counting the moment it is
dropped; the few cycles (failures with tracebacks, some Deferred chains) can
wait for a larger threshold.  Objects that exist once the server has started
(modules, plugins, the service tree) are frozen out of its walks
altogether.

"Collector" alone, in this code base, is a Prometheus collector
(L{realtime.ops.metrics}); this one is always the I{garbage} collector.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

#: young-generation threshold, and how many collections of one generation
#: make one of the next: about 50,000 net allocations between young
#: collections instead of 700
THRESHOLDS = (50_000, 20, 10)


class GCTuning(Service):
    """
    Raises the garbage collector's thresholds and freezes what exists at start;
    puts both back when stopped (tests start servers in one process).
    """

    def __init__(self, thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
        self._thresholds = thresholds
        self._saved: tuple[int, int, int] | None = None

    def startService(self) -> None:
        """
        Freeze the start-up objects, raise the thresholds.
        """
        Service.startService(self)
        self._saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*self._thresholds)

    def stopService(self) -> None:
        """
        Python's own settings again.
        """
        Service.stopService(self)
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None
