"""
Tests for L{realtime.closecodes}: every code it names is one the server
sends, and README's table of close codes lists exactly those.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

import realtime
from realtime import closecodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(realtime.__file__)))


def constants() -> dict[str, int]:
    """
    Every close code C{closecodes} names: its upper-case C{int} constants.
    """
    return {name: value for name, value in vars(closecodes).items() if name.isupper() and isinstance(value, int)}


def sources() -> str:
    """
    The text of every module of C{realtime/} but C{closecodes.py}.
    """
    texts = []
    for directory, _, files in os.walk(os.path.join(ROOT, "realtime")):
        for name in files:
            path = os.path.join(directory, name)
            if name.endswith(".py") and path != closecodes.__file__:
                with open(path, encoding="utf-8") as f:
                    texts.append(f.read())
    return "\n".join(texts)


def readmeTable() -> dict[int, str]:
    """
    The codes of README's "Close codes the server sends" table, with their meaning's first line.
    """
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("Close codes the server sends:") :]
    table = table[: table.index("\n\n", table.index("====== ====", table.index("code   meaning")))]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d{4})   (.*)$", table, re.MULTILINE)}


class CloseCodeTests(SynchronousTestCase):
    """
    No close code is documented that the server never sends.
    """

    def test_everyCodeIsSent(self) -> None:
        """
        Each code is named where the server closes with it (as
        C{closecodes.NAME}), unless Autobahn sends it itself.
        """
        text = sources()
        for name, code in constants().items():
            if code in closecodes.SENT_BY_AUTOBAHN:
                continue
            self.assertIn(f"closecodes.{name}", text, f"{name} ({code}) is never sent")

    def test_everyCodeDescribed(self) -> None:
        """
        C{DESCRIPTIONS} has one entry per code, and nothing else.
        """
        self.assertEqual(sorted(closecodes.DESCRIPTIONS), sorted(constants().values()))

    def test_readmeListsExactlyTheseCodes(self) -> None:
        """
        README's table has a row for every code and none for a code not sent.
        """
        self.assertEqual(sorted(readmeTable()), sorted(constants().values()))
