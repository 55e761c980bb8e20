"""
Tests for L{realtime.websocket._autobahn.privates}: the private names of
Autobahn, Twisted and txaio are touched in C{realtime/websocket/_autobahn/}
only, and every one touched there is looked up by the compat module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Iterator

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from txaio.testutil import replace_loop

from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.routing.echo import EchoStrategy
from realtime.websocket._autobahn import privates
from realtime.websocket._autobahn.privates import UnsupportedVersion
from tests.support import (
    PEER,
    TolerantTransport,
    buildFactory,
    clientFrame,
    closeFrame,
    handshake,
    serverFrames,
    splitResponse,
)

PACKAGE = Path(__file__).resolve().parent.parent / "realtime"
ROOM = PACKAGE / "websocket" / "_autobahn"
THIRD_PARTY = ("autobahn", "twisted", "txaio")


def isPrivate(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def isThirdParty(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in THIRD_PARTY


def modules() -> Iterator[tuple[Path, str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield path, dotted.removesuffix(".__init__"), ast.parse(path.read_text(encoding="utf-8"))


def inherited(cls: type) -> set[str]:
    """
    The private names the third-party classes in C{cls}'s MRO define or use
    (the attribute names their methods' code names: instance attributes
    are set there).
    """
    names: set[str] = set()
    for base in cls.__mro__:
        if isThirdParty(base.__module__):
            for name, value in vars(base).items():
                if isPrivate(name):
                    names.add(name)
                code = getattr(inspect.unwrap(value) if callable(value) else value, "__code__", None)
                if code is not None:
                    names.update(attr for attr in code.co_names if isPrivate(attr))
    return names


#: the private instance attributes the compat module checks, looked for on anything
KNOWN = {name for name in privates.ATTRIBUTES if isPrivate(name)}


def touches(path: Path, dotted: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """
    Every touch of a third-party private name in one module: imported, read
    or set on anything (the names the compat module checks), named in a
    string, or used, defined or overridden inside a class that inherits it.
    """
    thirdPartyNames: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and isThirdParty(node.module):
            for alias in node.names:
                thirdPartyNames.add(alias.asname or alias.name)
                if isPrivate(alias.name) or any(isPrivate(part) for part in (node.module or "").split(".")):
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if isThirdParty(alias.name):
                    thirdPartyNames.add((alias.asname or alias.name).split(".")[0])
                    if any(isPrivate(part) for part in alias.name.split(".")):
                        yield node.lineno, f"import {alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in KNOWN:
                yield node.lineno, f".{node.attr}"
            elif isPrivate(node.attr) and isinstance(node.value, ast.Name) and node.value.id in thirdPartyNames:
                yield node.lineno, f"{node.value.id}.{node.attr}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KNOWN:
            yield node.lineno, repr(node.value)
    module = importlib.import_module(dotted)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name, None)
        if not inspect.isclass(cls):
            continue
        theirs = inherited(cls)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and inner.attr in theirs:
                yield inner.lineno, f"{node.name}: .{inner.attr}"
            elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.name in theirs:
                yield inner.lineno, f"{node.name} overrides {inner.name}"
            elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store) and inner.id in theirs:
                yield inner.lineno, f"{node.name} sets {inner.id}"


class RoomTests(SynchronousTestCase):
    """
    Private names of Autobahn, Twisted and txaio stay in the room.
    """

    def test_onlyInTheRoom(self) -> None:
        """
        No module outside C{realtime/websocket/_autobahn/} imports, reads,
        sets or overrides a private name of Autobahn, Twisted or txaio.
        """
        found = [
            f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
            for path, dotted, tree in modules()
            if ROOM not in path.parents
            for line, what in touches(path, dotted, tree)
        ]
        self.maxDiff = None
        self.assertEqual(found, [])

    def test_roomChecksWhatItUses(self) -> None:
        """
        Every private name the room touches is one the compat module looks
        up (so an upgrade that drops one fails at import, in one place).
        """
        from realtime.websocket._autobahn.connection import ServerConnection

        theirs = inherited(ServerConnection) | KNOWN
        checked = {entry.rsplit(".", 1)[-1] for entry in privates.CHECKED}
        used: set[str] = set()
        for path, _, tree in modules():
            if ROOM not in path.parents or path.name == "privates.py":
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in theirs:
                    used.add(node.attr)
                elif isinstance(node, ast.FunctionDef) and node.name in theirs:
                    used.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in theirs:
                    used.add(node.id)
        self.assertTrue(used)
        self.assertEqual(used - checked, set())

    def test_catches(self) -> None:
        """
        The scan sees the kinds of touches it exists to catch, and not our
        own private names.
        """
        source = (
            "from autobahn.websocket.protocol import _is_same_origin, WebSocketProtocol\n"
            "from twisted.internet import tcp\n"
            "x = WebSocketProtocol._WS_MAGIC\n"
            "def f(t):\n"
            "    return t._tempDataLen + tcp._private\n"
            "class Mine:\n"
            "    _ours = 1\n"
            "    def _mine(self):\n"
            "        return self._ours\n"
        )
        found = [what for _, what in touches(Path("x.py"), "realtime", ast.parse(source))]
        self.assertEqual(
            found,
            [
                "from autobahn.websocket.protocol import _is_same_origin",
                "WebSocketProtocol._WS_MAGIC",
                "._tempDataLen",
                "tcp._private",
            ],
        )


class TypeIgnoreTests(SynchronousTestCase):
    """
    Type checking is waived only in the room.
    """

    def test_onlyInTheRoom(self) -> None:
        """
        No C{type: ignore} outside C{realtime/websocket/_autobahn/}, and the
        mypy configuration overrides nothing outside it.
        """
        import tomllib

        found = [
            f"{path.relative_to(PACKAGE.parent)}:{number}"
            for path in sorted(PACKAGE.rglob("*.py"))
            if ROOM not in path.parents
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if "type: ignore" in line
        ]
        self.assertEqual(found, [])
        config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
        self.assertNotIn("ignore_errors", config)
        for override in config.get("overrides", []):
            modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
            for module in modules:
                self.assertTrue(module.startswith("realtime.websocket._autobahn"), module)


class CompatTests(SynchronousTestCase):
    """
    A missing private name fails at import, naming itself and the supported
    versions.
    """

    def test_lookup(self) -> None:
        class Owner:
            pass

        with self.assertRaises(UnsupportedVersion) as caught:
            privates._lookup(Owner, "_gone")
        self.assertIn("Owner._gone", str(caught.exception))
        self.assertIn(privates.SUPPORTED, str(caught.exception))
        self.assertIsInstance(caught.exception, ImportError)

    def test_assignedBy(self) -> None:
        def sets(self: Any) -> None:
            self._there = 1

        self.assertEqual(privates._assignedBy(sets, "_there"), "_there")
        with self.assertRaises(UnsupportedVersion) as caught:
            privates._assignedBy(sets, "_gone")
        self.assertIn("setting ._gone", str(caught.exception))


class ConfiguredClassTests(SynchronousTestCase):
    """
    The protocol class a factory builds carries only the options that
    factory changed from Autobahn's defaults; every option reads as the
    factory's.
    """

    def test_onlyChanges(self) -> None:
        from autobahn.twisted.websocket import WebSocketServerProtocol

        factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), Clock(), maxMessageSize=1000)
        factory.setProtocolOptions(openHandshakeTimeout=7)
        proto = factory.buildProtocol(PEER)
        own = {name for name in vars(type(proto)) if name in WebSocketServerProtocol.CONFIG_ATTRS}
        self.assertEqual(
            own,
            {
                "failByDrop",
                "echoCloseCodeReason",
                "maxFramePayloadSize",
                "maxMessagePayloadSize",
                "openHandshakeTimeout",
                "perMessageCompressionAccept",
            },
        )
        for name in WebSocketServerProtocol.CONFIG_ATTRS:
            self.assertEqual(getattr(proto, name), getattr(factory, name), name)


class TrickledSendTests(SynchronousTestCase):
    """
    Autobahn's trickled sends (C{sync}, C{chopsize}) work: its queue's drain
    is C{_send}, which the sending half once shadowed with an attribute of
    its own (the scan of the room now catches such a name).
    """

    def test_inOrder(self) -> None:
        """
        A synchronous send leaves after what was queued before it, through
        Autobahn's queue of the connection's own.
        """
        clock = Clock()
        loop = replace_loop(clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), clock)
        proto = factory.buildProtocol(PEER)
        transport = TolerantTransport()
        proto.makeConnection(transport)
        proto.dataReceived(handshake())
        clock.advance(0)
        head, _ = splitResponse(transport.value())
        transport.clear()
        proto.sendMessage(b"first", False)
        proto.sendMessage(b"second", False, sync=True)
        proto.sendMessage(b"third", False, fragmentSize=None, sync=False)
        for _ in range(5):
            clock.advance(0.01)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        self.assertEqual([payload for _, payload in serverFrames(transport.value())], [b"first", b"second", b"third"])
        self.assertIn("send_queue", proto.__dict__)


class NoDebugFormattingTests(SynchronousTestCase):
    """
    Autobahn formats its debug log arguments eagerly (C{hltype}, C{hlval});
    the connection's own methods replace every Autobahn method that does on
    the common path, which is why no monkeypatch of those helpers is needed.
    """

    def test_commonPath(self) -> None:
        """
        A fast handshake, a message and a clean close call neither helper.
        """
        clock = Clock()
        loop = replace_loop(clock)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        factory = buildFactory(AnonymousAuthenticator(), EchoStrategy(), clock)
        called: list[str] = []

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and frame.f_code.co_name in ("hltype", "hlval"):
                called.append(frame.f_code.co_name)

        proto = factory.buildProtocol(PEER)
        transport = TolerantTransport()
        sys.setprofile(profile)
        try:
            proto.makeConnection(transport)
            proto.dataReceived(handshake())
            clock.advance(0)
            proto.dataReceived(clientFrame(b"hello"))
            proto.dataReceived(closeFrame(1000))
            clock.advance(0)
            proto.connectionLost(Failure(ConnectionDone()))
        finally:
            sys.setprofile(None)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(called, [])
