"""
Finding auth and routing plugins, the built-ins exactly like third parties'.

Everything goes through C{twisted.plugin.getPlugins} over the
C{twisted.plugins} namespace: the built-ins bound in
C{twisted/plugins/realtime_plugin.py}, every installed distribution's own
dropins, and each ``--plugin-dir``.  C{getPlugins} silently skips a dropin that
fails to import; here such a file is reported by name, every plugin is
checked with C{verifyObject}, and a broken plugin never hides the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, Sequence, TypeVar, cast

import twisted.plugins
from twisted.plugin import getCache, getPlugins
from twisted.python import usage
from twisted.python.modules import getModule
from zope.interface import Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from realtime.interfaces import (
    IAuthenticator,
    IAuthenticatorFactory,
    IChannelAuthorizer,
    IFirstMessageAuthenticator,
    IPushFraming,
    IRoutingStrategy,
    IRoutingStrategyFactory,
    IWarnings,
)

T = TypeVar("T")


@dataclass
class PluginSet(Generic[T]):
    """
    The plugins of one kind, by name.
    """

    kind: str
    option: str
    byName: dict[str, T] = field(default_factory=dict)

    def find(self, name: str) -> T:
        """
        The plugin called C{name}.

        @raise usage.UsageError: naming the unknown plugin and the known ones.
        """
        try:
            return self.byName[name]
        except KeyError:
            raise usage.UsageError(
                f"unknown {self.kind} {name!r} (--{self.option}); available: {', '.join(sorted(self.byName))}"
            ) from None


@dataclass
class PluginCatalog:
    """
    What discovery found, and what went wrong on the way.
    """

    auth: PluginSet[IAuthenticatorFactory]
    routing: PluginSet[IRoutingStrategyFactory]
    problems: list[str] = field(default_factory=list)


def addPluginDirectories(directories: Iterable[str]) -> list[str]:
    """
    Put C{directories} on the C{twisted.plugins} search path for this run.

    @return: the directories actually added (for tests to take them out).
    @raise usage.UsageError: for a directory that does not exist.
    """
    added = []
    for directory in directories:
        path = os.path.abspath(directory)
        if not os.path.isdir(path):
            raise usage.UsageError(f"--plugin-dir {directory!r} is not a directory")
        if path not in twisted.plugins.__path__:
            twisted.plugins.__path__.insert(0, path)
            added.append(path)
    return added


def _brokenDropins() -> list[str]:
    """
    The dropin files that fail to import, each with the reason.
    """
    loaded = getCache(twisted.plugins)
    problems = []
    for module in getModule("twisted.plugins").iterModules():
        if module.name.rsplit(".", 1)[-1] in loaded:
            continue
        try:
            module.load()
        except BaseException as e:
            problems.append(f"plugin file {module.filePath.path} could not be imported: {type(e).__name__}: {e}")
    return problems


def _collect(interface: type[Interface], into: PluginSet[T], problems: list[str]) -> None:
    for plugin in getPlugins(interface):
        origin = getattr(type(plugin), "__module__", "?")
        try:
            verifyObject(interface, plugin)
            name = cast(Any, plugin).name
        except (Invalid, Exception) as e:
            problems.append(f"{into.kind} plugin {plugin!r} from {origin} does not provide {interface.__name__}: {e}")
            continue
        existing = into.byName.get(name)
        if existing is None:
            into.byName[name] = cast(T, plugin)
        elif type(existing).__qualname__ != type(plugin).__qualname__:
            problems.append(
                f"{into.kind} plugin name {name!r} is taken by {type(existing).__module__}; "
                f"ignoring the one from {origin}"
            )


def discover(pluginDirectories: Sequence[str] = ()) -> PluginCatalog:
    """
    Find every auth and routing plugin.
    """
    addPluginDirectories(pluginDirectories)
    catalog = PluginCatalog(PluginSet("auth", "auth"), PluginSet("routing", "routing"))
    catalog.problems.extend(_brokenDropins())
    _collect(IAuthenticatorFactory, catalog.auth, catalog.problems)
    _collect(IRoutingStrategyFactory, catalog.routing, catalog.problems)
    return catalog


def describe(catalog: PluginCatalog) -> str:
    """
    The text of ``--list-plugins``: every plugin with its options.
    """
    lines = []
    for plugins in (catalog.auth, catalog.routing):
        lines.append(f"{plugins.kind} plugins (--{plugins.option} NAME, --{plugins.option}-option KEY=VALUE):")
        for name in sorted(plugins.byName):
            plugin = plugins.byName[name]
            lines.append(f"  {name:<18} {plugin.description}")
            for option, text in sorted(plugin.options.items()):
                lines.append(f"      {option}=...  {text}")
        lines.append("")
    if catalog.problems:
        lines.append("problems:")
        lines.extend(f"  {p}" for p in catalog.problems)
    return "\n".join(lines).rstrip() + "\n"


#: the optional interfaces a built plugin may declare, each checked in full
#: when it does (a declared hook that is missing fails at startup, not on
#: the first connection that needs it)
OPTIONAL_INTERFACES: tuple[type[Interface], ...] = (IFirstMessageAuthenticator, IWarnings, IChannelAuthorizer, IPushFraming)


def builtInterfaces(required: type[Interface], built: Any) -> list[type[Interface]]:
    """
    The interfaces C{built} (what a factory's build method returned) must
    satisfy: C{required}, and each optional one it declares it provides.
    """
    interfaces = [required]
    interfaces.extend(i for i in OPTIONAL_INTERFACES if i.providedBy(built) and i is not required)
    return interfaces


def verifyBuilt(required: type[Interface], built: Any) -> None:
    """
    Check what a plugin's factory built against C{required} and every
    optional interface it declares.

    @raise zope.interface.exceptions.Invalid: naming what is missing.
    """
    for interface in builtInterfaces(required, built):
        verifyObject(interface, built)


def checkBuilt(option: str, factory: Any, built: Any) -> None:
    """
    L{verifyBuilt} for the plugin chosen with C{--option}, C{factory}'s
    product, as a C{usage.UsageError} naming it.
    """
    required = IAuthenticator if option == "auth" else IRoutingStrategy
    try:
        verifyBuilt(required, built)
    except Invalid as e:
        raise usage.UsageError(f"--{option} {factory.name!r} built {built!r}, which is broken: {e}") from None


def pluginWarnings(*built: Any) -> list[str]:
    """
    What the built plugins announce as insecure: the L{IWarnings} of each
    that provides it, in order.
    """
    return [warning for plugin in built if IWarnings.providedBy(plugin) for warning in plugin.warnings()]
