"""
Tests for L{realtime.plugin}, the façade plugin authors import, and for the
plugin guide built on it: README.rst's example is the shipped example file,
and its example test passes as its author would run it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types

import twisted.plugin
import zope.interface
from twisted.trial.unittest import SynchronousTestCase

import realtime.plugin
from realtime import closecodes, interfaces, values
from realtime.config import pluginoptions
from realtime.core import uids
from tests.pluginsource import realtimeImports
from tests.serverprocess import ROOT, environment

EXAMPLE = os.path.join(ROOT, "plugins", "example_auth.py")
#: the line of the example file README.rst's example starts after
MARKER = "# README.rst's example starts here\n"


def readmeSection() -> str:
    """
    README.rst's "Writing an auth plugin" section.
    """
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        readme = f.read()
    start = readme.index("Writing an auth plugin\n======")
    following = re.compile(r"\n[^\n]+\n=+\n").search(readme, start + len("Writing an auth plugin\n======"))
    assert following is not None
    return readme[start : following.start()]


def literalBlocks(text: str) -> list[str]:
    """
    The C{::} literal blocks of C{text}, dedented by their four spaces.
    """
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.endswith("::"):
            continue
        block: list[str] = []
        for following in lines[i + 2 :]:
            if following and not following.startswith("    "):
                break
            block.append(following[4:])
        blocks.append("\n".join(block).strip("\n") + "\n")
    return blocks


class FacadeTests(SynchronousTestCase):
    """
    C{__all__} is the façade's whole surface: each name is there, is what
    the server itself uses, and is documented.
    """

    def test_allImportable(self) -> None:
        """
        Every name in C{__all__} is importable (C{import *} gives exactly
        those), and each appears once.
        """
        namespace: dict[str, object] = {}
        exec("from realtime.plugin import *", namespace)
        namespace.pop("__builtins__")
        self.assertEqual(sorted(namespace), sorted(realtime.plugin.__all__))
        self.assertEqual(len(set(realtime.plugin.__all__)), len(realtime.plugin.__all__))

    def test_documented(self) -> None:
        """
        Every name is listed in the module's docstring (the page a plugin
        author reads), and every class, function and module it names has a
        docstring of its own.
        """
        doc = realtime.plugin.__doc__ or ""
        for name in realtime.plugin.__all__:
            self.assertIn(f"C{{{name}}}", doc, f"{name} is not documented in realtime.plugin's docstring")
            obj = getattr(realtime.plugin, name)
            if isinstance(obj, (type, types.FunctionType, types.ModuleType)) or isinstance(obj, zope.interface.interface.InterfaceClass):
                self.assertTrue((getattr(obj, "__doc__", None) or "").strip(), f"{name} has no docstring")

    def test_sameObjects(self) -> None:
        """
        The façade re-exports the server's own objects, not copies: a
        plugin's C{Accept} is the one the shell checks for.
        """
        sources = [interfaces, values, pluginoptions, uids, twisted.plugin, zope.interface]
        for name in realtime.plugin.__all__:
            obj = getattr(realtime.plugin, name)
            if name == "closecodes":
                self.assertIs(obj, closecodes)
                continue
            owners = [m for m in sources if getattr(m, name, None) is obj]
            self.assertTrue(owners, f"{name} is not the server's own object")
        self.assertEqual(set(realtime.plugin.Action.__args__), {values.Reply, values.Deliver, values.Refuse, values.Close})


class ExampleTests(SynchronousTestCase):
    """
    The shipped example and README.rst's copy of it.
    """

    def example(self) -> str:
        with open(EXAMPLE, encoding="utf-8") as f:
            return f.read()

    def test_readmeIsTheExample(self) -> None:
        """
        README.rst's example is the example file's code, verbatim.
        """
        code = self.example()
        self.assertIn(MARKER, code)
        shipped = code[code.index(MARKER) + len(MARKER) :]
        self.assertEqual(literalBlocks(readmeSection())[0], shipped)

    def test_facadeOnly(self) -> None:
        """
        The example imports C{realtime.plugin} and nothing else of ours.
        """
        self.assertEqual(realtimeImports(self.example()), {"realtime.plugin"})

    def test_short(self) -> None:
        """
        A handshake-time plugin is what its author writes: the
        authenticator is about ten lines, the whole plugin about thirty
        (it was 47 before the façade and the optional hooks).
        """
        code = self.example()
        shipped = [line for line in code[code.index(MARKER) :].splitlines()[1:] if line.strip()]
        authenticator = shipped[shipped.index("@implementer(IAuthenticator)") : shipped.index("@implementer(IPlugin, IAuthenticatorFactory)")]
        self.assertLessEqual(len(authenticator), 12)
        self.assertLessEqual(len(shipped), 30)

    def test_readmeTestPasses(self) -> None:
        """
        README.rst's example test runs green with trial, as the plugin's
        author would run it: the example on the path, nothing of this
        project's test suite.
        """
        test = next(b for b in literalBlocks(readmeSection()) if "SynchronousTestCase" in b)
        self.assertEqual(realtimeImports(test), {"realtime.plugin", "realtime.testing"})
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "example_auth.py"), "w") as f:
            f.write(self.example())
        with open(os.path.join(directory, "test_example_auth.py"), "w") as f:
            f.write(test)
        env = environment()
        env["PYTHONPATH"] = directory + os.pathsep + env["PYTHONPATH"]
        result = subprocess.run(
            [sys.executable, "-m", "twisted.trial", "test_example_auth"],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("PASSED (successes=3)", result.stdout)
