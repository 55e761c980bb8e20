"""
Tests for L{realtime.core.checks}, the one reader of numbers and yes/no
values, and for its three users saying the same thing for the same mistake:
``twistd realtime`` options, plugin options and namespace rules.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from realtime.config.options import NUMBERS, Options
from realtime.config.pluginoptions import PluginOptions
from realtime.core import checks
from realtime.core.namespaces import parseNamespaceSpec


class ReaderTests(SynchronousTestCase):
    """
    Each reader answers the value or a message that is the predicate alone.
    """

    def refusal(self, read: Any, *args: Any, **kwargs: Any) -> str:
        return str(self.assertRaises(ValueError, read, *args, **kwargs))

    def test_wholeNumber(self) -> None:
        self.assertEqual(checks.wholeNumber("12", minimum=1), 12)
        self.assertEqual(checks.wholeNumber(7, minimum=7), 7)
        self.assertEqual(self.refusal(checks.wholeNumber, "1.5", minimum=0), "must be a whole number, not '1.5'")
        self.assertEqual(self.refusal(checks.wholeNumber, None, minimum=0), "must be a whole number, not None")
        self.assertEqual(self.refusal(checks.wholeNumber, True, minimum=0), "must be a whole number, not True")
        self.assertEqual(self.refusal(checks.wholeNumber, "0", minimum=1), "must be >= 1, not '0'")

    def test_number(self) -> None:
        self.assertEqual(checks.number("0.5", minimum=0), 0.5)
        self.assertEqual(checks.number("0", minimum=0), 0.0)
        self.assertEqual(self.refusal(checks.number, "soon", minimum=0), "must be a number, not 'soon'")
        self.assertEqual(self.refusal(checks.number, "-1", minimum=0), "must be a finite number >= 0, not '-1'")
        self.assertEqual(
            self.refusal(checks.number, "0", minimum=0, exclusive=True), "must be a finite number > 0, not '0'"
        )
        for endless in ("inf", "-inf", "nan", "NaN"):
            self.assertIn("must be a finite number", self.refusal(checks.number, endless, minimum=0))

    def test_flag(self) -> None:
        for word in checks.TRUE + ("TRUE", " Yes ", True):
            self.assertIs(checks.flag(word), True)
        for word in checks.FALSE + ("Off", False):
            self.assertIs(checks.flag(word), False)
        self.assertEqual(self.refusal(checks.flag, "maybe"), "must be true or false, not 'maybe'")

    def test_choice(self) -> None:
        self.assertEqual(checks.choice("b", ["a", "b"]), "b")
        self.assertEqual(self.refusal(checks.choice, "c", ["a", "b"]), "must be one of a, b, not 'c'")


class SameMessageTests(SynchronousTestCase):
    """
    The three places settings come from prefix the same predicate with the
    name of the setting.
    """

    def test_options(self) -> None:
        def refused(*argv: str) -> str:
            return str(self.assertRaises(usage.UsageError, Options().parseOptions, list(argv)))

        self.assertEqual(refused("--offline-max", "x"), "--offline-max must be a whole number, not 'x'")
        self.assertEqual(refused("--head-timeout", "0"), "--head-timeout must be a finite number >= 1, not '0'")
        self.assertEqual(refused("--ping-interval", "inf"), "--ping-interval must be a finite number >= 0, not 'inf'")

    def test_everyNumberOptionIsChecked(self) -> None:
        """
        Each option in L{NUMBERS} refuses a word.
        """
        for option in NUMBERS:
            message = str(
                self.assertRaises(usage.UsageError, Options().parseOptions, [f"--{option}", "x"])
            )
            self.assertTrue(message.startswith(f"--{option} must be a"), message)

    def test_pluginOptions(self) -> None:
        options = PluginOptions("p", {"n": "x", "f": "maybe", "w": "-1"}, ["n", "f", "w"])
        self.assertEqual(
            str(self.assertRaises(ValueError, options.integer, "n", 1)), "p: option 'n' must be a whole number, not 'x'"
        )
        self.assertEqual(
            str(self.assertRaises(ValueError, options.flag, "f", False)), "p: option 'f' must be true or false, not 'maybe'"
        )
        self.assertEqual(
            str(self.assertRaises(ValueError, options.number, "w", 1.0)), "p: option 'w' must be a finite number >= 0, not '-1'"
        )
        self.assertEqual(options.number("absent", 2.5), 2.5)

    def test_namespaces(self) -> None:
        def refused(spec: str) -> str:
            return str(self.assertRaises(ValueError, parseNamespaceSpec, spec))

        self.assertEqual(refused("news:*:history=x"), "namespace 'news:*': history must be a whole number, not 'x'")
        self.assertEqual(refused("news:*:history=-1"), "namespace 'news:*': history must be >= 0, not '-1'")
        self.assertEqual(refused("news:*:ttl=0"), "namespace 'news:*': ttl must be a finite number > 0, not '0'")
        # once, not "..., not 'maybe', not 'maybe'" as when each place had its own reader
        self.assertEqual(refused("news:*:presence=maybe"), "namespace 'news:*': presence must be true or false, not 'maybe'")
        rules = parseNamespaceSpec("news:*:history=0:ttl=1.5:presence=yes:publish=off")
        self.assertEqual((rules.history, rules.ttl, rules.presence, rules.publish), (0, 1.5, True, False))
