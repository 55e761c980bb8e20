"""
Per-namespace channel rules: which channels keep history, announce
presence, accept publishes from clients, or are open to everyone.

A namespace is an ``fnmatch`` pattern over channel names (``news:*``,
``chat:*``, ``*``); the first rule whose pattern matches a channel applies.
Rules come from ``--namespace 'news:*:history=100:ttl=3600'`` (repeatable)
or a TOML table ``[namespace."news:*"]``; a final ``*`` rule with the
defaults always applies last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Iterable, Mapping, cast

from realtime.core import checks
from realtime.values import Retention

#: a channel name: printable, no spaces or pattern characters, at most 200
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_\-:.@/=+~#$%&!]{1,200}")

KEYS = {
    "history": "messages kept per channel for resuming subscribers (0: none)",
    "ttl": "seconds a kept message stays",
    "presence": "announce join/leave to subscribers and answer presence queries (true/false)",
    "publish": "clients may publish to these channels if they may subscribe (true/false)",
    "public": "every authenticated client may subscribe, not only those the auth plugin allows (true/false)",
}


@dataclass(frozen=True, slots=True)
class NamespaceOptions:
    """
    What applies to the channels of one namespace.
    """

    pattern: str = "*"
    history: int = 100
    ttl: float = 600.0
    presence: bool = False
    publish: bool = False
    public: bool = False

    @property
    def retention(self) -> Retention:
        """
        The store's view of C{history} and C{ttl}.
        """
        return Retention(self.history, self.ttl)


DEFAULT = NamespaceOptions()


def validChannel(name: object) -> bool:
    """
    Whether C{name} is a usable channel name.
    """
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


def parseNamespace(pattern: str, values: Mapping[str, object]) -> NamespaceOptions:
    """
    Check the options of one namespace.

    @raise ValueError: naming the bad key or value.
    """
    if not pattern or any(c.isspace() for c in pattern):
        raise ValueError(f"namespace pattern {pattern!r} must be non-empty and without spaces")
    options = replace(DEFAULT, pattern=pattern)
    for key, value in values.items():
        if key not in KEYS:
            raise ValueError(f"namespace {pattern!r}: unknown key {key!r}; known: {', '.join(KEYS)}")
        try:
            if key == "history":
                options = replace(options, history=checks.wholeNumber(str(value), minimum=0))
            elif key == "ttl":
                options = replace(options, ttl=checks.number(str(value), minimum=0, exclusive=True))
            else:
                options = replace(options, **cast(dict[str, Any], {key: checks.flag(value)}))
        except ValueError as e:
            raise ValueError(f"namespace {pattern!r}: {key} {e}") from None
    return options


def parseNamespaceSpec(spec: str) -> NamespaceOptions:
    """
    ``news:*:history=100:ttl=3600`` -> the options of ``news:*``.

    The pattern is everything up to the first ``:KEY=VALUE`` part, so
    patterns may themselves contain colons.
    """
    parts = spec.split(":")
    cut = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
    pattern = ":".join(parts[:cut])
    values: dict[str, str] = {}
    for part in parts[cut:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"namespace {pattern!r}: {part!r} is not KEY=VALUE")
        values[key] = value
    return parseNamespace(pattern, values)


class NamespaceRules:
    """
    The ordered rules; the first match wins, ``*`` with defaults last.
    """

    def __init__(self, rules: Iterable[NamespaceOptions] = ()) -> None:
        self.rules = tuple(rules)
        if not any(rule.pattern == "*" for rule in self.rules):
            self.rules += (DEFAULT,)
        self._cache: dict[str, NamespaceOptions] = {}

    def match(self, channel: str) -> NamespaceOptions:
        """
        The options that apply to C{channel}.
        """
        found = self._cache.get(channel)
        if found is None:
            found = next((r for r in self.rules if fnmatchcase(channel, r.pattern)), DEFAULT)
            if len(self._cache) < 100_000:
                self._cache[channel] = found
        return found
