"""
``GET /api/backup``: a copy of the SQLite database, made by the server.

The server holds its database locked while it runs, so ``sqlite3 .backup``
or ``VACUUM INTO`` from another process is refused; the store copies itself
in its own thread instead (L{IBackupSource}), and the copy is streamed from
disk to the client by a producer: memory stays bounded by one read buffer
however large the file and however slow the reader, and the copy's name is
gone from the directory before the first byte is sent, so nothing is left
behind whether the download completes, fails or is abandoned.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from twisted.web.static import NoRangeStaticProducer

from realtime.interfaces import IBackupSource

CONTENT_TYPE = b"application/vnd.sqlite3"


class BackupInProgress(Exception):
    """
    Another backup is being made or downloaded: one at a time, so backups
    never hold more than one copy's worth of disk.
    """


def backupFilename(now: float) -> str:
    """
    The name a download is saved under: C{realtime-20261201T182901Z.sqlite3}.
    """
    return time.strftime("realtime-%Y%m%dT%H%M%SZ.sqlite3", time.gmtime(now))


class BackupDownloads:
    """
    Serves backups of C{source}, one at a time.

    @ivar busy: whether a backup is being made or downloaded, from the
        request until its copy is closed.
    @ivar served: backups whose download started.
    """

    def __init__(self, source: IBackupSource, reactor: IReactorTime) -> None:
        self._source = source
        self._reactor = reactor
        self.busy = False
        self.served = 0

    def send(self, request: IRequest) -> Deferred[None]:
        """
        Make a copy and start streaming it as C{request}'s answer.

        @return: a Deferred firing once the answer is under way (or the
            client left first), or failing, with nothing written, if no copy
            could be made.
        @raise BackupInProgress: if another backup is not finished.
        """
        if self.busy:
            raise BackupInProgress("another backup is in progress; try again once it is done")
        self.busy = True
        now = self._reactor.seconds()
        over = cast(Request, request).notifyFinish()
        d = self._source.backup()
        d.addCallbacks(self._stream, self._failed, callbackArgs=(request, over, now))
        return d

    def _failed(self, failure: Any) -> Any:
        self.busy = False
        return failure

    def _stream(self, copy: IO[bytes], request: IRequest, over: Deferred[None], now: float) -> None:
        producer = NoRangeStaticProducer(request, copy)
        over.addBoth(self._over, producer)
        if over.called:
            # the client left while the copy was made: _over closed it
            return
        self.served += 1
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        request.setHeader(b"Content-Length", b"%d" % os.fstat(copy.fileno()).st_size)
        request.setHeader(b"Content-Disposition", b'attachment; filename="%s"' % backupFilename(now).encode())
        producer.start()

    def _over(self, result: object, producer: NoRangeStaticProducer) -> None:
        """
        The answer is complete, or its connection is gone: close the copy
        (again, if the producer did: closing twice is harmless), which frees
        its space, and let the next backup in.  A client leaving is not an
        error.
        """
        producer.stopProducing()
        self.busy = False
