"""
setup.py names what exists: the console script's module and function, so a
module moved without its entry point fails here and not at install time.
"""

from __future__ import annotations

import importlib
import os
import re

from twisted.trial.unittest import SynchronousTestCase

import realtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(realtime.__file__)))


class ConsoleScriptTests(SynchronousTestCase):
    """
    Every C{console_scripts} entry of setup.py is importable and callable.
    """

    def test_entryPointsResolve(self) -> None:
        with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
            text = f.read()
        entries = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)
        self.assertIn(("realtime-push", "realtime.client.cli", "main"), entries)
        for _, module, name in entries:
            self.assertTrue(callable(getattr(importlib.import_module(module), name)), f"{module}:{name}")
