"""
Reading ``--auth-option`` / ``--routing-option`` values the same way in
every plugin, so a bad value is always refused with a message that names the
plugin and the option; the values themselves are read by
L{realtime.core.checks}, as every other setting is.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, TypeVar

from realtime.core import checks

_T = TypeVar("_T")


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
        return self._read(name, checks.choice, self._given.get(name, default), choices)

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        """
        A finite number (seconds, usually) of at least C{minimum}.
        """
        raw = self._given.get(name)
        return default if raw is None else self._read(name, checks.number, raw, minimum=minimum)

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        """
        A whole number of at least C{minimum}.
        """
        raw = self._given.get(name)
        return default if raw is None else self._read(name, checks.wholeNumber, raw, minimum=minimum)

    def flag(self, name: str, default: bool) -> bool:
        """
        A yes/no value: 1/0, true/false, yes/no, on/off.
        """
        raw = self._given.get(name)
        return default if raw is None else self._read(name, checks.flag, raw)

    def _read(self, name: str, read: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """
        C{read(*args, **kwargs)}, its refusal named after this plugin and option.
        """
        try:
            return read(*args, **kwargs)
        except ValueError as e:
            raise self.error(name, str(e)) from None
