"""
Plugins written as a third party writes them, for the tests that load them:
files in a temporary ``--plugin-dir``, or a tiny installed-style
distribution (a package plus its ``twisted/plugins/`` dropin) on the path,
and a check of what their source imports from this project.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import uuid
from typing import Mapping

import twisted.plugins


def realtimeImports(source: str) -> set[str]:
    """
    The C{realtime} modules C{source} imports (C{import realtime.x},
    C{from realtime.x import y}, C{from realtime import x}), by parsing it.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "realtime")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "realtime":
            if node.module == "realtime":
                found.update(f"realtime.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return found


def writeDistribution(root: str, package: str, modules: Mapping[str, str], dropin: str) -> str:
    """
    Lay out what ``pip install`` of a plugin distribution leaves in
    site-packages: C{root/package/} with C{modules} (name -> source) and an
    empty C{__init__.py}, and C{root/twisted/plugins/<package>_plugin.py}
    holding C{dropin}, with no C{__init__.py} under C{twisted/}, so that
    C{twisted.plugins} (a namespace over every path entry) finds it once
    C{root} is on C{sys.path}.

    @return: C{root}.
    """
    os.makedirs(os.path.join(root, package), exist_ok=True)
    with open(os.path.join(root, package, "__init__.py"), "w") as f:
        f.write("")
    for name, text in modules.items():
        with open(os.path.join(root, package, name + ".py"), "w") as f:
            f.write(text)
    plugins = os.path.join(root, "twisted", "plugins")
    os.makedirs(plugins, exist_ok=True)
    with open(os.path.join(plugins, package + "_plugin.py"), "w") as f:
        f.write(dropin)
    return root


class PluginDirectoryMixin:
    """
    A fresh plugin directory whose files get unique module names, taken off
    C{twisted.plugins.__path__} and C{sys.modules} again after the test.
    """

    def pluginDirectory(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        self.addCleanup(self._forget, directory)
        return directory

    def addFile(self, directory: str, text: str | None = None, source: str | None = None) -> str:
        name = f"rt_test_{uuid.uuid4().hex[:12]}"
        path = os.path.join(directory, name + ".py")
        if source is not None:
            shutil.copy(source, path)
        else:
            with open(path, "w") as f:
                f.write(text or "")
        return name

    def _forget(self, directory: str) -> None:
        path = os.path.abspath(directory)
        while path in twisted.plugins.__path__:
            twisted.plugins.__path__.remove(path)
        for name in [m for m in sys.modules if m.startswith("twisted.plugins.rt_test_")]:
            del sys.modules[name]
