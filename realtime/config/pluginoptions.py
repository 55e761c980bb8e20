"""
Reading ``--auth-option`` / ``--routing-option`` values the same way in
every plugin, so a bad value is always refused with a message that names the
plugin and the option.
"""

from __future__ import annotations

from typing import Iterable, Mapping


class PluginOptions:
    """
    The options given to one plugin, checked against the ones it knows.

    Every accessor raises C{ValueError} with a message like
    ``wechat: option 'window' must be a number of seconds, not 'abc'``.
    """

    def __init__(self, plugin: str, given: Mapping[str, str], known: Iterable[str]) -> None:
        self.plugin = plugin
        self._given = dict(given)
        known = set(known)
        unknown = sorted(set(self._given) - known)
        if unknown:
            raise ValueError(
                f"{plugin}: unknown option {unknown[0]!r}; "
                f"it takes: {', '.join(sorted(known)) or 'no options'}"
            )

    def error(self, name: str, message: str) -> ValueError:
        """
        A C{ValueError} naming this plugin and option C{name}.
        """
        return ValueError(f"{self.plugin}: option {name!r} {message}")

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        """
        The value of C{name}, or C{default}; C{required} refuses an absent or
        empty one.
        """
        value = self._given.get(name, default)
        if required and not value:
            raise self.error(name, "is required")
        return value

    def choice(self, name: str, choices: Iterable[str], default: str) -> str:
        """
        One of C{choices}.
        """
        choices = list(choices)
        value = self._given.get(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        """
        A number (seconds, usually) of at least C{minimum}.
        """
        raw = self._given.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(name, f"must be a number, not {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise self.error(name, f"must be a finite number >= {minimum:g}, not {raw!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        """
        A whole number of at least C{minimum}.
        """
        raw = self._given.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(name, f"must be a whole number, not {raw!r}") from None
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, not {raw!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """
        A yes/no value: 1/0, true/false, yes/no, on/off.
        """
        raw = self._given.get(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise self.error(name, f"must be true or false, not {raw!r}")
