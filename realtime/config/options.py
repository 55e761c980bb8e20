"""
``twistd realtime`` options: the command line, a TOML file, and checks.

Every option can also come from the file given with ``--config`` (its keys
are the long option names); the command line wins over the file, and the
file over the defaults.  Bad values are refused at startup with a message
that names the option.  The table of options is
L{realtime.config.defaults}; reading the values that are more than a
number, L{realtime.config.readers}; numbers and words, L{realtime.core.checks}.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence, TypeVar

from twisted.python import usage

from realtime import __version__
from realtime.config.backends import checkBroker, checkStore, checkWorkers, needsRedis, useAsyncioReactor
from realtime.config.defaults import DEFAULTS, ENDPOINTS, LISTS, PARAMETERS
from realtime.config.discovery import describe, discover
from realtime.config.pluginoptions import PluginOptions
from realtime.config.readers import checkEndpoint, loadApiKey, parsePairs, readConfig, splitPluginSpec
from realtime.core import checks
from realtime.core.limits import ProxyTrust, defaultMaxConnections, parseRate
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.core.origins import OriginPolicy
from realtime.interfaces import IRoutingContextUser
from realtime.workers.handoff import Handoff

__all__ = ["DEFAULTS", "NUMBERS", "Options", "checkOption", "loadApiKey"]

_T = TypeVar("_T")

#: option -> (reader, minimum): every option that is a number, checked in this order
NUMBERS: dict[str, tuple[Callable[..., Any], float]] = {
    "max-message-size": (checks.wholeNumber, 1),
    "max-message-frames": (checks.wholeNumber, 1),
    "ping-interval": (checks.number, 0),
    "max-queued-bytes": (checks.wholeNumber, 65536),
    "max-connections": (checks.wholeNumber, 0),
    "max-connections-per-ip": (checks.wholeNumber, 0),
    "max-connections-per-uid": (checks.wholeNumber, 0),
    "offline-ttl": (checks.number, 0),
    "offline-max": (checks.wholeNumber, 1),
    "max-uids-per-push": (checks.wholeNumber, 1),
    "head-timeout": (checks.number, 1),
    "workers": (checks.wholeNumber, 1),
}


def checkOption(option: str, read: Callable[..., _T], raw: Any, *args: Any, **kwargs: Any) -> _T:
    """
    C{read(raw, ...)} from L{realtime.core.checks}, its refusal as a
    C{UsageError} that names C{--option}.
    """
    try:
        return read(raw, *args, **kwargs)
    except ValueError as e:
        raise usage.UsageError(f"--{option} {e}") from None


class Options(usage.Options):
    """
    ``twistd realtime`` options.
    """

    synopsis = "[options]"
    longdesc = (
        "A WebSocket push server. With no options it serves WebSocket and the demo page on :8080, "
        "the HTTP push API on 127.0.0.1:8081 and the line-JSON push port on 127.0.0.1:5678, "
        "with uid-first-packet auth and uid routing. Listeners are Twisted endpoint strings "
        "(tcp:, ssl:, unix:). See --list-plugins for the auth and routing plugins."
    )
    optParameters = [[name, short, None, text] for name, short, text in PARAMETERS]
    optFlags = [["list-plugins", None, "list every auth and routing plugin with its options, and exit"]]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        for key in LISTS:
            self[key] = []
        #: the arguments parsed, as given: what C{--workers} starts its workers with
        self.arguments: list[str] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, and under twistd answer a bad option with its error and a
        pointer to C{--help}.

        twistd answers a L{usage.UsageError} by printing the whole usage
        text (sixty lines) and then, last, the one line that matters; so
        here, when run by twistd (C{parent} is its C{ServerOptions}), the
        error is printed alone and the process exits as twistd would (1).
        Called directly (tests, scripts), the error is raised as usual.
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            print(f"twistd realtime: error: {e}", file=sys.stderr)
            print("(twistd realtime --help lists every option)", file=sys.stderr)
            raise SystemExit(1) from None

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"realtime {__version__}")
        raise SystemExit(0)

    def opt_auth_option(self, pair: str) -> None:
        """
        KEY=VALUE option for the auth plugin (repeatable).
        """
        self["auth-option"].append(pair)

    def opt_routing_option(self, pair: str) -> None:
        """
        KEY=VALUE option for the routing plugin (repeatable).
        """
        self["routing-option"].append(pair)

    def opt_plugin_dir(self, directory: str) -> None:
        """
        Directory of dropin plugin files to load (repeatable; default ./plugins when it exists).
        """
        self["plugin-dir"].append(directory)

    def opt_namespace(self, spec: str) -> None:
        """
        Channel rules PATTERN:KEY=VALUE:... e.g. 'news:*:history=100:ttl=3600:presence=true';
        keys: history, ttl, presence, publish, public (repeatable; first match wins).
        """
        self["namespace"].append(spec)

    def opt_allowed_origin(self, origin: str) -> None:
        """
        Origin of pages allowed to open WebSockets: scheme://host[:port] (default port if left out), * wildcards,
        'null' for pages opened from files (repeatable; default: any, null included).
        """
        self["allowed-origin"].append(origin)

    def opt_api_cors_origin(self, origin: str) -> None:
        """
        Origin of pages that may call the HTTP API from a browser (with the key), wildcards allowed,
        'none' for no page (repeatable; default: any, since every call needs the key).
        """
        self["api-cors-origin"].append(origin)

    def opt_trust_proxy(self, address: str) -> None:
        """
        Proxy address or CIDR network whose X-Forwarded-For names the client, for
        the per-address limit; 'none' for no proxy (repeatable; default 127.0.0.0/8 and ::1).
        """
        self["trust-proxy"].append(address)

    def postOptions(self) -> None:
        """
        Merge the config file and the defaults, then check every value:
        parsing and checking only, no object of the server is built here
        (that is C{realtime.wiring.buildCore}'s, with the reactor).
        """
        self.mergeDefaults()
        try:
            handoff = self["worker"] = Handoff.fromEnvironment(os.environ)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        for option in ENDPOINTS:
            # a worker's sockets were bound (and their options checked) by its parent
            if handoff is None or option not in handoff.sockets:
                self[option] = checkEndpoint(option, self[option])
        if self["max-connections"] is None:
            self["max-connections"] = defaultMaxConnections()
        for option, (read, minimum) in NUMBERS.items():
            self[option] = checkOption(option, read, self[option], minimum=minimum)
        self.checkLimits()
        checkOption("log-format", checks.choice, self["log-format"], ("text", "json"))
        self["store"], self["broker"] = checkStore(str(self["store"])), checkBroker(str(self["broker"]))
        if handoff is not None:
            self["workers"] = 1
        checkWorkers(self["workers"], self["broker"], self["store"], {option: self[option] for option in ENDPOINTS})
        if needsRedis(self["store"], self["broker"]):
            useAsyncioReactor()
        try:
            self["namespace-rules"] = NamespaceRules(parseNamespaceSpec(spec) for spec in self["namespace"])
        except ValueError as e:
            raise usage.UsageError(f"--namespace {e}") from None
        self["auth-name"], authOptions = splitPluginSpec("auth", self["auth"])
        self["routing-name"], routingOptions = splitPluginSpec("routing", self["routing"])
        self["auth-options"] = {**authOptions, **parsePairs("auth-option", self["auth-option"])}
        self["routing-options"] = {**routingOptions, **parsePairs("routing-option", self["routing-option"])}
        if not self["plugin-dir"] and os.path.isdir("plugins"):
            self["plugin-dir"] = ["plugins"]
        if self["api-key"] is not None and not str(self["api-key"]).strip():
            raise usage.UsageError("--api-key must not be empty")
        try:
            self["origin-policy"] = OriginPolicy(self["allowed-origin"])
        except ValueError as e:
            raise usage.UsageError(f"--allowed-origin {e}") from None
        self.findPlugins()

    def mergeDefaults(self) -> None:
        """
        Fill in what the command line left out from the config file, and
        what both left out from L{DEFAULTS}; a list given on the command
        line replaces the file's.
        """
        config = readConfig(self["config"]) if self["config"] else {}
        for key, default in DEFAULTS.items():
            if key in LISTS:
                self[key] = list(self[key]) or list(config.get(key, default))
            elif self.get(key) is None or (key == "list-plugins" and not self[key]):
                self[key] = config.get(key, default)

    def checkLimits(self) -> None:
        """
        The proxies and rate limits (see README.rst, "Limits and protections").
        """
        try:
            self["proxy-trust"] = ProxyTrust(self["trust-proxy"])
            self["client-rate-limit"] = parseRate("client-rate", self["client-rate"])
            self["api-rate-limit"] = parseRate("api-rate", self["api-rate"])
        except ValueError as e:
            message = str(e)
            raise usage.UsageError(message if message.startswith("--") else f"--trust-proxy: {message}") from None

    def findPlugins(self) -> None:
        """
        Discover the plugins and find the chosen ones, so that an unknown
        name stops the start with a clear message.  Building them (which
        checks their options, and needs the reactor) is the wiring's:
        C{realtime.wiring.buildCore}.
        """
        catalog = discover(self["plugin-dir"])
        self["plugin-problems"] = catalog.problems
        if self["list-plugins"]:
            print(describe(catalog), end="")
            raise SystemExit(0)
        self["auth-factory"] = catalog.auth.find(self["auth-name"])
        routingFactory = self["routing-factory"] = catalog.routing.find(self["routing-name"])
        if IRoutingContextUser.providedBy(routingFactory):
            # built by the wiring, in the server's routing context; its
            # option names can be checked now, its values only then
            try:
                PluginOptions(routingFactory.name, self["routing-options"], routingFactory.options)
            except ValueError as e:
                raise usage.UsageError(f"--routing {e}") from None
