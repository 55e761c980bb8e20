"""
Tests for L{realtime.ops.logs} and the hook that hands twistd its JSON log
observer (L{realtime.tap.RealtimeService}).
"""

from __future__ import annotations

import io
import json
import os
import sys

from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from realtime.ops.logs import JsonLogObserver, eventAsLine, jsonLogObserver, observerFor
from realtime.tap import RealtimeService


class EventTests(SynchronousTestCase):
    """
    L{eventAsLine}: one event, one line of JSON.
    """

    def capture(self) -> tuple[Logger, io.StringIO]:
        out = io.StringIO()
        return Logger(namespace="realtime.test", observer=JsonLogObserver(out)), out

    def test_fields(self) -> None:
        """
        The line has the time, level, namespace, formatted text, and the
        event's own fields; values JSON cannot hold are their repr.
        """
        log, out = self.capture()
        log.warn("dropping {uid} after {n} s", uid="alice", n=30, peer=object)
        [line] = out.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(
            {k: record[k] for k in ("level", "namespace", "text", "uid", "n")},
            {"level": "warn", "namespace": "realtime.test", "text": "dropping alice after 30 s", "uid": "alice", "n": 30},
        )
        self.assertTrue(record["time"].endswith("+00:00"))
        self.assertEqual(record["peer"], repr(object))
        self.assertNotIn("log_format", record)

    def test_failure(self) -> None:
        """
        A logged failure carries its traceback.
        """
        log, out = self.capture()
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("computing failed")
        record = json.loads(out.getvalue())
        self.assertEqual((record["level"], record["text"]), ("critical", "computing failed"))
        self.assertIn("ZeroDivisionError", record["traceback"])

    def test_oneLineEach(self) -> None:
        """
        Newlines in a message stay inside the JSON string.
        """
        line = eventAsLine({"log_format": "two\nlines", "log_level": LogLevel.info, "log_time": 0.0})
        self.assertNotIn("\n", line)
        self.assertEqual(json.loads(line)["text"], "two\nlines")

    def test_brokenFailure(self) -> None:
        """
        An event whose failure cannot format itself is still logged.
        """
        failure = Failure(ValueError("x"))
        failure.getTraceback = None  # type: ignore[method-assign, assignment]
        record = json.loads(eventAsLine({"log_failure": failure, "log_format": "f", "log_time": 0.0}))
        self.assertIn("Failure", record["traceback"])


class DestinationTests(SynchronousTestCase):
    """
    The JSON lines go where twistd's text log would.
    """

    def test_stdout(self) -> None:
        """
        C{-n} without C{--logfile}, or C{--logfile -}: stdout.
        """
        self.assertIs(observerFor({"nodaemon": True, "logfile": None}).out, sys.stdout)
        self.assertIs(observerFor({"nodaemon": False, "logfile": "-"}).out, sys.stdout)
        self.assertIs(observerFor(None).out, sys.stdout)
        self.assertIs(jsonLogObserver().out, sys.stdout)

    def test_file(self) -> None:
        """
        C{--logfile PATH}: that file; a daemon without one: C{twistd.log}.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "realtime.log")
        observer = observerFor({"nodaemon": True, "logfile": path})
        observer({"log_format": "hello", "log_time": 0.0})
        observer.out.close()
        with open(path) as f:
            self.assertEqual(json.loads(f.read())["text"], "hello")
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        observer = observerFor({"nodaemon": False, "logfile": None})
        self.addCleanup(observer.out.close)
        self.assertEqual(os.path.basename(observer.out.path), "twistd.log")


class HookTests(SynchronousTestCase):
    """
    L{RealtimeService} gives the application its observer.
    """

    def test_component(self) -> None:
        """
        With an observer, joining the application sets its
        C{ILogObserver} component, which twistd then logs to; without,
        nothing is set.
        """
        observer = JsonLogObserver(io.StringIO())
        application = Application("realtime")
        service = RealtimeService()
        service.logObserver = observer
        service.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)
        plain = Application("realtime")
        RealtimeService().setServiceParent(plain)
        self.assertIsNone(plain.getComponent(ILogObserver))
