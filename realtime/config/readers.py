"""
Reading the option values that are more than a number: plugin specs
(``NAME:KEY=VALUE``), the TOML file, endpoint strings and the API key file.
Each refuses a bad value with a C{UsageError} that names the option.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from typing import Any, Sequence

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from realtime.config.defaults import DEFAULTS, LISTS


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
