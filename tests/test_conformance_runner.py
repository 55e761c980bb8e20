"""
Tests for L{tests.conformance.run}: what it makes of the testsuite's
C{index.json}, and the spec it hands to wstest.  (Running wstest itself needs
the testsuite, which CI does not have.)
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import run


def case(behavior: str, closeBehavior: str = "OK") -> dict[str, object]:
    """
    One entry of C{index.json}, as wstest writes it.
    """
    return {"behavior": behavior, "behaviorClose": closeBehavior, "duration": 1, "remoteCloseCode": 1000}


class SummaryTests(SynchronousTestCase):
    """
    The summary line and the verdict.
    """

    cases = {
        "9.10.1": case("OK"),
        "3.2": case("NON-STRICT"),
        "9.2.1": case("OK"),
        "7.13.1": case("INFORMATIONAL"),
        "12.1.1": case("UNIMPLEMENTED"),
        "5.15": case("NON-STRICT"),
    }

    def test_summaryLine(self) -> None:
        """
        Every verdict is counted, in the testsuite's order, zeros included.
        """
        counts = run.countBehaviors(self.cases)
        self.assertEqual(
            run.summaryLine(counts), "6 cases: OK 2, NON-STRICT 2, INFORMATIONAL 1, UNIMPLEMENTED 1, FAILED 0"
        )
        self.assertEqual(run.summaryLine(counts, missing=3).split(", ")[-1], "MISSING 3")

    def test_otherVerdicts(self) -> None:
        """
        A verdict the summary does not know is counted as OTHER, not lost.
        """
        counts = run.countBehaviors({"1.1.1": case("OK"), "1.1.2": case("WRONG CODE")})
        self.assertTrue(run.summaryLine(counts).endswith("FAILED 0, OTHER 1"))
        self.assertFalse(run.passed(counts))

    def test_passed(self) -> None:
        """
        Only OK and INFORMATIONAL pass, and only with no case missing.
        """
        self.assertTrue(run.passed(run.countBehaviors({"1.1.1": case("OK"), "7.1.6": case("INFORMATIONAL")})))
        for behavior in ("NON-STRICT", "UNIMPLEMENTED", "FAILED"):
            self.assertFalse(run.passed(run.countBehaviors({"1.1.1": case("OK"), "2.1": case(behavior)})), behavior)
        self.assertFalse(run.passed(run.countBehaviors({"1.1.1": case("OK")}), missing=1))

    def test_notOkInCaseOrder(self) -> None:
        """
        The cases to look at, by verdict, in numeric case order.
        """
        self.assertEqual(
            run.notOk(self.cases),
            {"NON-STRICT": ["3.2", "5.15"], "INFORMATIONAL": ["7.13.1"], "UNIMPLEMENTED": ["12.1.1"]},
        )


class FilesTests(SynchronousTestCase):
    """
    The spec written for wstest, and the index read back.
    """

    def test_specPointsAtTestee(self) -> None:
        """
        The committed spec runs every case; the written one targets the
        testee's URL, writes into wstest's directory and takes the patterns.
        """
        with open(run.SPEC) as f:
            committed = json.load(f)
        self.assertEqual((committed["cases"], committed["exclude-cases"]), (["*"], []))
        outdir = self.mktemp()
        os.makedirs(outdir)
        name = run.writeSpec(outdir, "ws://127.0.0.1:4321/", None, run.patterns("12.*, 13.*"))
        with open(os.path.join(outdir, name)) as f:
            spec = json.load(f)
        self.assertEqual(spec["servers"], [{"agent": "realtime", "url": "ws://127.0.0.1:4321/"}])
        self.assertEqual((spec["outdir"], spec["cases"], spec["exclude-cases"]), (".", ["*"], ["12.*", "13.*"]))

    def test_readIndex(self) -> None:
        """
        The cases of the one agent in C{index.json}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({"realtime": {"1.1.1": case("OK")}}, f)
        self.assertEqual(run.readIndex(path), {"1.1.1": case("OK")})

    def test_testeeArguments(self) -> None:
        """
        The testee is the README's: anonymous, echo, 16 MiB messages, and
        only the WebSocket port.
        """
        args = run.testeeArguments()
        self.assertEqual(args[args.index("--routing") + 1], "echo")
        self.assertEqual(args[args.index("--max-message-size") + 1], str(16 * 1024 * 1024))
        self.assertEqual((args[args.index("--api-port") + 1], args[args.index("--push-port") + 1]), ("none", "none"))
