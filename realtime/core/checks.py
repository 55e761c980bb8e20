"""
Reading a number, a whole number, a yes/no value or one of a few words
from text, the one way every setting is read: ``twistd realtime`` options
and their TOML file (L{realtime.config.options}), plugin options
(L{realtime.config.pluginoptions}) and namespace rules
(L{realtime.core.namespaces}).

Each reader raises C{ValueError} whose message is the predicate alone
(C{"must be a whole number, not 'abc'"}); the caller puts the name of what
it read in front (C{"--max-message-size "}, C{"wechat: option 'window' "},
C{"namespace 'news:*': history "}), so that every refusal names the setting
and says the same thing for the same mistake.  C{inf} and C{nan} parse as
floats and are refused: no setting means "forever" by them, and a
comparison with C{nan} is always false, which would let it pass any bound.
"""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["FALSE", "TRUE", "choice", "flag", "number", "wholeNumber"]

#: the words L{flag} reads as yes and as no, in lower case
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def wholeNumber(raw: object, *, minimum: int) -> int:
    """
    C{raw} (text, or already an C{int}) as an C{int} of at least C{minimum};
    C{1.5} and C{True} are refused, not rounded.

    @raise ValueError: C{"must be a whole number, not ..."} or
        C{"must be >= MINIMUM, not ..."}.
    """
    if isinstance(raw, bool):
        raise ValueError(f"must be a whole number, not {raw!r}")
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError(f"must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"must be >= {minimum}, not {raw!r}")
    return value


def number(raw: object, *, minimum: float, exclusive: bool = False) -> float:
    """
    C{raw} (text, or already a number) as a finite C{float} of at least
    C{minimum}, or above it if C{exclusive}.

    @raise ValueError: C{"must be a number, not ..."} or
        C{"must be a finite number >= MINIMUM, not ..."} (C{>} if C{exclusive}).
    """
    if isinstance(raw, bool):
        raise ValueError(f"must be a number, not {raw!r}")
    try:
        value = float(str(raw))
    except ValueError:
        raise ValueError(f"must be a number, not {raw!r}") from None
    inBounds = value > minimum if exclusive else value >= minimum
    if not (inBounds and math.isfinite(value)):
        raise ValueError(f"must be a finite number {'>' if exclusive else '>='} {minimum:g}, not {raw!r}")
    return value


def flag(raw: object) -> bool:
    """
    C{raw} as yes or no: a C{bool}, or one of L{TRUE} / L{FALSE} in any case.

    @raise ValueError: C{"must be true or false, not ..."}.
    """
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"must be true or false, not {raw!r}")


def choice(raw: object, choices: Iterable[str]) -> str:
    """
    C{raw} if it is one of C{choices}.

    @raise ValueError: C{"must be one of A, B, not ..."}.
    """
    choices = list(choices)
    if raw not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, not {raw!r}")
    return str(raw)
