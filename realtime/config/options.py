"""
``twistd realtime`` options: the command line, a TOML file, and checks.

Every option can also come from the file given with ``--config`` (its keys
are the long option names); the command line wins over the file, and the
file over the defaults.  Bad values are refused at startup with a message
that names the option.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tomllib
from typing import Any, Sequence

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from realtime import __version__
from realtime.config.backends import checkBroker, checkStore, needsRedis, useAsyncioReactor
from realtime.config.discovery import describe, discover
from realtime.config.pluginoptions import PluginOptions
from realtime.core.limits import LOOPBACK, ProxyTrust, defaultMaxConnections, parseRate
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.core.origins import OriginPolicy
from realtime.interfaces import IRoutingContextUser

#: (name, short, default, help): None means "not given"; see Options.defaults
PARAMETERS: list[tuple[str, str | None, str]] = [
    ("port", "p", "WebSocket and web endpoint; a bare number is tcp:NUMBER (default tcp:8080)"),
    ("api-port", None, "HTTP push API endpoint, or 'none'; a bare number keeps 127.0.0.1 (default tcp:8081:interface=127.0.0.1)"),
    ("push-port", None, "line-JSON push endpoint (Workerman Text protocol), or 'none'; a bare number keeps 127.0.0.1 (default tcp:5678:interface=127.0.0.1)"),
    ("auth", "a", "auth plugin: NAME or NAME:KEY=VALUE:... (default uid-first-packet)"),
    ("routing", "r", "routing plugin: NAME or NAME:KEY=VALUE:... (default uid)"),
    ("api-key", None, "key the HTTP API requires as 'Authorization: Bearer KEY' (default: read --api-key-file)"),
    ("api-key-file", None, "file holding the API key, created with a random key if missing (default realtime-api.key)"),
    ("head-timeout", None, "seconds a client has to send each HTTP request head, on every port (default 10)"),
    ("max-message-size", None, "largest message in bytes, from clients and from backends (default 1048576)"),
    ("max-message-frames", None, "frames one client message may have; more close the connection with 1009 (default 1024)"),
    ("ping-interval", None, "a client silent this many seconds is pinged, and dropped if silent twice as long; 0 disables (default 30)"),
    ("max-queued-bytes", None, "bytes written to a client (pushes, replies, errors, pongs) and not yet read by it, before it is dropped as a slow consumer (default 4194304)"),
    ("max-connections", None, "WebSocket connections in all, more are refused with 503; 0: no limit (default: the open-file limit minus a tenth, 100 to 1000, of it)"),
    ("max-connections-per-ip", None, "WebSocket connections per client address (an IPv6 /64), more are refused with 429; 0: no limit (default 1000)"),
    ("max-connections-per-uid", None, "connections one uid may hold, more are refused (429, or close 4008); 0: no limit (default 32)"),
    ("client-rate", None, "messages per second a connection may send, RATE[:BURST]; over it close 4029; 0: no limit (default 100:200)"),
    ("api-rate", None, "pushes per second the HTTP API key may make, RATE[:BURST]; over it 429; 0: no limit (default 1000:2000)"),
    ("store", None, "message store for history and offline queues: sqlite:PATH, memory, or a Redis URL shared by every node (default sqlite:realtime.sqlite3)"),
    ("broker", None, "how pushes reach sessions: memory (this process) or a Redis URL (redis://HOST:PORT/DB, rediss://, redis+sentinel://, redis+cluster://) for several nodes (default memory)"),
    ("offline-ttl", None, "seconds a push to a uid without connections waits for it; 0 disables the offline queue (default 86400)"),
    ("offline-max", None, "pushes that may wait per uid; more are refused (default 100)"),
    ("max-uids-per-push", None, "uids one push may name (line port and HTTP API); more are refused (default 10000)"),
    ("log-format", None, "text or json: one JSON object per line, where twistd would log (default text)"),
    ("config", "c", "TOML file with any of these options (keys are the long option names)"),
]

DEFAULTS: dict[str, Any] = {
    "port": "tcp:8080",
    "api-port": "tcp:8081:interface=127.0.0.1",
    "push-port": "tcp:5678:interface=127.0.0.1",
    "auth": "uid-first-packet",
    "routing": "uid",
    "api-key": None,
    "api-key-file": "realtime-api.key",
    "head-timeout": 10.0,
    "max-message-size": 1024 * 1024,
    "max-message-frames": 1024,
    "ping-interval": 30.0,
    "max-queued-bytes": 4 * 1024 * 1024,
    "max-connections": None,
    "max-connections-per-ip": 1000,
    "max-connections-per-uid": 32,
    "trust-proxy": list(LOOPBACK),
    "client-rate": "100:200",
    "api-rate": "1000:2000",
    "store": "sqlite:realtime.sqlite3",
    "broker": "memory",
    "offline-ttl": 86400.0,
    "offline-max": 100,
    "max-uids-per-push": 10000,
    "log-format": "text",
    "config": None,
    "namespace": [],
    "auth-option": [],
    "routing-option": [],
    "plugin-dir": [],
    "allowed-origin": [],
    "api-cors-origin": ["*"],
    "list-plugins": False,
}

LISTS = ("auth-option", "routing-option", "plugin-dir", "allowed-origin", "api-cors-origin", "namespace", "trust-proxy")
ENDPOINTS = ("port", "api-port", "push-port")


def splitPluginSpec(option: str, spec: str) -> tuple[str, dict[str, str]]:
    """
    ``wechat:token=abc:window=60`` -> C{("wechat", {"token": "abc", "window": "60"})}.
    """
    name, *pairs = spec.split(":")
    if not name:
        raise usage.UsageError(f"--{option} needs a plugin name")
    return name, parsePairs(option + "-option", pairs)


def parsePairs(option: str, pairs: Sequence[str]) -> dict[str, str]:
    """
    C{["k=v", ...]} -> C{{"k": "v"}}, refusing anything without C{=}.
    """
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise usage.UsageError(f"--{option} wants KEY=VALUE, not {pair!r}")
        result[key.strip()] = value
    return result


def readConfig(path: str) -> dict[str, Any]:
    """
    The options in a TOML file, keyed by long option name.

    ``auth-option`` / ``routing-option`` may be tables (``[auth-option]``
    with ``token = "..."``) or lists of ``"KEY=VALUE"``.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError(f"--config {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError(f"--config {path!r}: {e}") from None
    config: dict[str, Any] = {}
    for rawKey, value in data.items():
        key = rawKey.replace("_", "-")
        if key not in DEFAULTS or key in ("config", "list-plugins"):
            raise usage.UsageError(f"--config {path!r}: unknown option {rawKey!r}")
        if key in ("auth-option", "routing-option") and isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        if key == "namespace" and isinstance(value, dict):
            value = [
                ":".join([pattern] + [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in opts.items()])
                if isinstance(opts, dict)
                else pattern
                for pattern, opts in value.items()
            ]
        if key in LISTS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise usage.UsageError(f"--config {path!r}: {rawKey!r} must be a list of strings")
        elif isinstance(value, (dict, list)):
            raise usage.UsageError(f"--config {path!r}: {rawKey!r} must be a single value")
        config[key] = value if key in LISTS else str(value)
    return config


#: C{HOST:PORT} or C{:PORT}, an address where an endpoint string was wanted
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})")


def _tcpEndpoint(option: str, port: str, interface: str | None = None) -> str:
    """
    The TCP endpoint string of C{port}, on C{interface} or else on the
    interface C{option} listens on by default.
    """
    rest = DEFAULTS[option].split(":")[2:]
    if interface is not None:
        rest = [p for p in rest if not p.startswith("interface=")] + ["interface=" + interface.replace(":", "\\:")]
    return ":".join(["tcp", port, *rest])


def checkEndpoint(option: str, description: str) -> str:
    """
    C{description} if it is a valid server endpoint string (or 'none').

    A bare port number is taken as TCP on that port and on the option's
    default interface (every interface for C{--port}, loopback for the
    internal ports), so C{--api-port 9081} does not open the API to the
    network; an address such as C{127.0.0.1:8080} is refused with the
    endpoint string it probably meant.

    @return: the endpoint string to listen on.
    """
    description = str(description)
    if description == "none" and option != "port":
        return description
    if description.isdigit() and int(description) <= 65535:
        return _tcpEndpoint(option, str(int(description)))
    try:
        serverFromString(MemoryReactor(), description)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        if description.startswith("systemd:") and isinstance(e, (IndexError, KeyError)):
            # Twisted looks the socket up while parsing: outside systemd there is none
            raise usage.UsageError(
                f"--{option} {description!r}: no socket inherited from systemd with that index or name; "
                "start it from a .socket unit (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES)"
            ) from None
        hint = ""
        match = _HOST_PORT.fullmatch(description)
        if match and int(match.group(2)) <= 65535:
            host = match.group(1).strip("[]")
            hint = f"; did you mean {_tcpEndpoint(option, match.group(2), host or None)!r}?"
        raise usage.UsageError(f"--{option} {description!r} is not a valid endpoint: {e}{hint}") from None
    return description


def checkNumber(option: str, raw: Any, *, integer: bool, minimum: float) -> Any:
    """
    C{raw} as a number of at least C{minimum}.
    """
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "a whole number" if integer else "a number"
        raise usage.UsageError(f"--{option} must be {kind}, not {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise usage.UsageError(f"--{option} must be >= {minimum:g}, not {raw!r}")
    return value


def loadApiKey(path: str) -> tuple[str, bool]:
    """
    The API key in C{path}; a random one is written there (mode 0600) first
    if the file does not exist.

    @return: the key, and whether it was just created.
    """
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        return key, True
    except OSError as e:
        raise usage.UsageError(f"--api-key-file {path!r}: {e.strerror}") from None
    if not key:
        raise usage.UsageError(f"--api-key-file {path!r} is empty")
    return key, False


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
        config = readConfig(self["config"]) if self["config"] else {}
        for key, default in DEFAULTS.items():
            if key in LISTS:
                self[key] = list(self[key]) or list(config.get(key, default))
            elif self.get(key) is None or (key == "list-plugins" and not self[key]):
                self[key] = config.get(key, default)
        for option in ENDPOINTS:
            self[option] = checkEndpoint(option, self[option])
        self["max-message-size"] = checkNumber("max-message-size", self["max-message-size"], integer=True, minimum=1)
        self["max-message-frames"] = checkNumber(
            "max-message-frames", self["max-message-frames"], integer=True, minimum=1
        )
        self["ping-interval"] = checkNumber("ping-interval", self["ping-interval"], integer=False, minimum=0)
        self["max-queued-bytes"] = checkNumber(
            "max-queued-bytes", self["max-queued-bytes"], integer=True, minimum=65536
        )
        self.checkLimits()
        self["offline-ttl"] = checkNumber("offline-ttl", self["offline-ttl"], integer=False, minimum=0)
        self["offline-max"] = checkNumber("offline-max", self["offline-max"], integer=True, minimum=1)
        self["max-uids-per-push"] = checkNumber("max-uids-per-push", self["max-uids-per-push"], integer=True, minimum=1)
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError(f"--log-format must be text or json, not {self['log-format']!r}")
        self["store"], self["broker"] = checkStore(str(self["store"])), checkBroker(str(self["broker"]))
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
        self["head-timeout"] = checkNumber("head-timeout", self["head-timeout"], integer=False, minimum=1)
        try:
            self["origin-policy"] = OriginPolicy(self["allowed-origin"])
        except ValueError as e:
            raise usage.UsageError(f"--allowed-origin {e}") from None
        self.findPlugins()

    def checkLimits(self) -> None:
        """
        The connection and rate limits (see README.rst, "Limits and protections").
        """
        if self["max-connections"] is None:
            self["max-connections"] = defaultMaxConnections()
        for option in ("max-connections", "max-connections-per-ip", "max-connections-per-uid"):
            self[option] = checkNumber(option, self[option], integer=True, minimum=0)
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
