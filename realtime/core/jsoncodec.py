"""
Strict JSON in and out, the one codec every parser of outside text uses (the
line port, the HTTP API, the channels protocol, the first packet, and the
clients reading the server's answers).

Python's C{json} module is lenient where an attacker can use it: it reads
and writes C{NaN} and C{Infinity} (not JSON: a browser's C{JSON.parse}
rejects the whole message), it raises C{RecursionError}, not C{ValueError},
for an array nested a few hundred deep, and it decodes a lone C{\\ud800}
escape into a string no UTF-8 encoder accepts.  Here each of these is a
L{JSONError}, a C{ValueError} saying precisely what is wrong, so a parser
answers its documented error and carries on.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["JSONError", "decode", "decodeQuickly", "encode"]


class JSONError(ValueError):
    """
    Text that is not strict JSON, or a value that cannot be sent as JSON.

    @ivar msg: what is wrong, without the position.
    @ivar lineno: the 1-based line of the problem, or C{None} when the
        problem has no single place (too deep, a number out of range).
    @ivar colno: the 1-based column, or C{None} likewise.
    """

    def __init__(self, msg: str, lineno: int | None = None, colno: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.lineno = lineno
        self.colno = colno

    def __str__(self) -> str:
        if self.lineno is None:
            return self.msg
        return f"{self.msg} at line {self.lineno} column {self.colno}"


def _refuseConstant(name: str) -> None:
    raise JSONError(f"{name} is not valid JSON")


def _finiteFloat(text: str) -> float:
    # 1e999 would become inf, and reach clients as Infinity: not JSON
    value = float(text)
    if value in (_INF, -_INF):
        raise JSONError(f"the number {text} is too large")
    return value


_INF = float("inf")
_decoder = json.JSONDecoder(parse_constant=_refuseConstant, parse_float=_finiteFloat)
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

TOO_DEEP = "nested too deeply"


def decode(text: str) -> Any:
    """
    The value of the JSON text C{text}.

    An object with nothing around it (the line every backend sends) is read
    with C{raw_decode}, at less than half C{json.loads}'s cost: C{loads}
    matches a whitespace regex before and after the value.  Anything else,
    and every error, goes through the decoder's C{decode}, so errors read as
    C{json}'s own do.

    Depth is bounded by the interpreter's recursion limit: the C scanner
    gives up with C{RecursionError} after reading only as many brackets as
    that limit (measured: 0.1 ms for a million), which is cheaper than any
    pre-scan of the text and costs nothing on the common path.

    @raise JSONError: for text that is not JSON, C{NaN}/C{Infinity}, a
        number too large for a double (C{1e999}), an integer too long to convert, or nesting deeper than the interpreter
        can follow (several hundred levels).
    """
    try:
        if text[:1] == "{":
            try:
                value, end = _decoder.raw_decode(text)
            except json.JSONDecodeError:
                pass
            else:
                if end == len(text):
                    return value
        return _decoder.decode(text)
    except json.JSONDecodeError as e:
        raise JSONError(e.msg, e.lineno, e.colno) from None
    except RecursionError:
        raise JSONError(TOO_DEEP) from None
    except JSONError:
        raise
    except ValueError as e:
        # an integer longer than Python's conversion limit
        raise JSONError(str(e)) from None


def decodeQuickly(data: bytes) -> Any:
    """
    The value of the UTF-8 JSON text C{data} as orjson reads it, or C{None}
    where orjson refuses it: for the line port, where this reads a push's
    line in 0.42 us against L{decode}'s 1.23 (timeit, a 60-byte line).

    orjson refuses all L{decode} refuses but nesting between the
    interpreter's depth and its own (1,024 levels), and it reads an integer
    beyond 64 bits as a float where L{decode} keeps the C{int}.  So a caller
    takes from the value only fields of a type that cannot differ (a
    string, a truth value), and on C{None}, or a field of another type,
    asks L{decode}, whose answer or error is then the one given.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def encode(value: object) -> bytes:
    """
    The compact UTF-8 JSON text of C{value}: what every server reply and
    re-encoded client value is sent as.

    @raise JSONError: for a string holding a lone surrogate (UTF-8 cannot
        carry it), a float that is not finite, or nesting too deep to write.
    """
    try:
        return _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise JSONError("is not valid Unicode (a lone surrogate escape such as \\ud800)") from None
    except RecursionError:
        raise JSONError("is nested too deeply") from None
    except ValueError:
        raise JSONError("holds a number JSON cannot carry (NaN, Infinity, or a float out of range)") from None
