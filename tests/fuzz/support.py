"""
The fuzz profiles, generators of hostile JSON text, and a check that no
traceback was logged.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Any, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

PROFILES = {"short": 50, "long": 20_000}

#: C{REALTIME_FUZZ=long} for the long run (or a number of inputs per target);
#: the short one is the default
PROFILE = os.environ.get("REALTIME_FUZZ", "short")

fuzz = settings(
    max_examples=PROFILES[PROFILE] if PROFILE in PROFILES else int(PROFILE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

#: any code point, lone surrogates included (C{json.dumps} writes them as
#: C{\\udXXX} escapes, which is how a hostile client sends them)
anyText = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40)

#: every float, C{NaN} and the infinities included (C{json.dumps} writes
#: them as C{NaN}/C{Infinity}, which is not JSON)
anyFloat = st.floats(allow_nan=True, allow_infinity=True)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40), anyFloat, anyText
)

#: decoded-JSON-like values with hostile leaves
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(anyText, children, max_size=4)
    ),
    max_leaves=12,
)


def _deep(opening: str, depth: int) -> str:
    return opening * depth


#: texts that broke parsers before, or nearly did
fragments = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
            '"\\ud800"',
            '"\\udfff"',
            '"\\ud83d\\ude00"',
            '"\\\\ud800"',
            '{"\\udc00": 1}',
            "1" * 5000,
            "\ufeff{}",
            "",
            " ",
            "null",
            "{}",
            "[]",
        ]
    ),
    st.builds(_deep, st.sampled_from(["[", "{", '{"a":', '{"id":', '[{"a":']), st.integers(1, 100_000)),
)


def dumps(value: Any) -> str:
    """
    C{value} as the lenient text a hostile client sends: C{NaN} allowed,
    surrogates escaped.
    """
    return json.dumps(value)


@st.composite
def mutated(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """
    A text from C{texts}, possibly cut short, with something spliced in, or
    with a hostile fragment put in place of a piece.
    """
    text = draw(texts)
    how = draw(st.sampled_from(["asis", "cut", "splice", "fragment"]))
    if how == "asis" or not text:
        return text
    at = draw(st.integers(0, len(text)))
    if how == "cut":
        return text[:at]
    if how == "splice":
        return text[:at] + draw(st.text(max_size=5)) + text[at:]
    end = draw(st.integers(at, len(text)))
    return text[:at] + draw(fragments) + text[end:]


def objectsWith(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[str]:
    """
    JSON object texts with some of C{fields} (each drawn from its strategy,
    or any value), maybe extra keys, then maybe mutated.
    """

    @st.composite
    def build(draw: st.DrawFn) -> str:
        obj: dict[str, Any] = {}
        for name, strategy in fields.items():
            if draw(st.booleans()) or draw(st.booleans()):
                obj[name] = draw(st.one_of(strategy, values))
        obj.update(draw(st.dictionaries(anyText, values, max_size=2)))
        return dumps(obj)

    return st.one_of(mutated(build()), fragments, st.builds(dumps, values), anyText)


@contextmanager
def noTracebacks() -> Iterator[list[dict[str, Any]]]:
    """
    Collect every event logged with a failure inside the block; fail if
    there is any (trial would too, but only once the whole test is over,
    too late for hypothesis to shrink the input).
    """
    failures: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observe)
    if failures:
        failure = failures[0].get("log_failure")
        raise AssertionError(f"logged: {failures[0].get('log_format')!r} {failure.getTraceback() if failure else ''}")
