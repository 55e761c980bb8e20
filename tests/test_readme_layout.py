"""
README's layout of C{realtime/} stays true: every module is listed, and
every listed path exists.  A module added without a line there, or one
moved or removed while its line stays, fails here.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

import realtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(realtime.__file__)))

#: one line of the tree: its indentation and the name (a directory ends in /)
_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z0-9_.]+/?)(?:  +\S.*)?$")


def readmeTree() -> list[str]:
    """
    The paths of README's layout block, relative to the repository: each
    line's name under the directory of the nearest line above it that is
    indented less.
    """
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("::\n\n", text.index("\nLayout, one idea per module")) + len("::\n\n")
    end = text.index("\n\n", start)
    paths: list[str] = []
    parents: list[tuple[int, str]] = []  # (indent, directory path) of the open directories
    for line in text[start:end].splitlines():
        match = _ENTRY.match(line[4:])
        if match is None:
            raise AssertionError(f"README layout: cannot read {line!r}")
        indent, name = len(match.group("indent")), match.group("name")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + name
        paths.append(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return paths


def modules() -> set[str]:
    """
    Every C{.py} file under C{realtime/} but the packages' C{__init__.py}
    (a package is listed by its directory's line).
    """
    found = set()
    for directory, dirs, files in os.walk(os.path.join(ROOT, "realtime")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                found.add(os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, "/"))
    return found


def packages() -> set[str]:
    """
    Every directory under C{realtime/} that holds an C{__init__.py}, as C{realtime/sub/}.
    """
    found = set()
    for directory, dirs, files in os.walk(os.path.join(ROOT, "realtime")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.add(os.path.relpath(directory, ROOT).replace(os.sep, "/") + "/")
    return found


class ReadmeLayoutTests(SynchronousTestCase):
    """
    The README's tree of C{realtime/} and the files agree.
    """

    def test_everyModuleListed(self) -> None:
        """
        Every module and every subpackage of C{realtime/} has its line.
        """
        listed = set(readmeTree())
        self.assertEqual(sorted(modules() - listed), [], "modules missing from README's layout")
        self.assertEqual(sorted(packages() - listed), [], "subpackages missing from README's layout")

    def test_everyListedPathExists(self) -> None:
        """
        No line names a file or directory that is not there.
        """
        missing = [path for path in readmeTree() if not os.path.exists(os.path.join(ROOT, path))]
        self.assertEqual(missing, [])

    def test_everyPathInProseExists(self) -> None:
        """
        A path of this repository's C{realtime/}, C{tests/} or C{bench/}
        named anywhere in README (as ````realtime/...````) exists: prose
        that points at a moved module is found too.
        """
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            named = set(re.findall(r"``((?:realtime|tests|bench)/[A-Za-z0-9_./-]*)``", f.read()))
        self.assertGreater(len(named), 5)
        self.assertEqual(sorted(p for p in named if not os.path.exists(os.path.join(ROOT, p))), [])

    def test_listedOnce(self) -> None:
        """
        No path has two lines.
        """
        paths = readmeTree()
        self.assertEqual(sorted(p for p in set(paths) if paths.count(p) > 1), [])

    def test_treeIsRead(self) -> None:
        """
        The parser sees nesting, so the checks above are not vacuous.
        """
        paths = readmeTree()
        self.assertIn("realtime/websocket/_autobahn/rfc6455.py", paths)
        self.assertIn("realtime/tap.py", paths)
        self.assertGreater(len(paths), 60)
