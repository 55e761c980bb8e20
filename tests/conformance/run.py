"""
Run the Autobahn testsuite (``wstest -m fuzzingclient``, cases 1.* to 13.*)
against ``twistd -n realtime``, and say in one line how it went.

The testee is started here, on a port the kernel picks, exactly as the
README's one-liner starts it (auth, routing and delivery in the path); the
testsuite itself is not part of this repository: give the command that runs
it with ``--wstest`` (the Docker image ``crossbario/autobahn-testsuite``, or
any Python 3 port's launcher).  The reports land in ``--outdir``
(``index.html`` is the one to open); the last line printed is::

    517 cases: OK 514, NON-STRICT 0, INFORMATIONAL 3, UNIMPLEMENTED 0, FAILED 0

The exit status is 0 only if nothing FAILED, nothing was NON-STRICT or
UNIMPLEMENTED (permessage-deflate, sections 12 and 13, is part of the goal),
every case ran, and the server logged no error.  Standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Mapping, Sequence

from tests.serverprocess import ServerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "fuzzingclient.json")

#: the verdicts, in the order the summary line gives them
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")

#: section 9 sends messages of up to 16 MiB
TESTEE_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

#: limits a conformance run meets on purpose, raised for the testee:
#: sections 9.7 and 9.8 send 1,000 messages back to back (over
#: ``--client-rate``), 9.3.1 and 9.4.1 a message in more than 65,536 frames
#: (``--max-message-frames``), 9.1.6 a 16 MiB message the echo writes back
#: at once (over ``--max-queued-bytes``)
TESTEE_LIMITS_OFF = ["--client-rate", "0", "--max-message-frames", "1048576", "--max-queued-bytes", "67108864"]


def testeeArguments(routing: str = "echo", maxMessageSize: int = TESTEE_MAX_MESSAGE_SIZE) -> list[str]:
    """
    The ``twistd -n realtime`` options of the testee (without ``--port``).
    """
    return [
        "--auth",
        "anonymous",
        "--routing",
        routing,
        "--max-message-size",
        str(maxMessageSize),
        "--api-port",
        "none",
        "--push-port",
        "none",
        *TESTEE_LIMITS_OFF,
    ]


def caseKey(caseId: str) -> list[int]:
    """
    Sort key of a case id: ``9.10.1`` after ``9.2.1``.
    """
    return [int(part) for part in caseId.split(".")]


def readIndex(path: str) -> dict[str, dict[str, Any]]:
    """
    The per-case results of C{index.json}, of its only agent, by case id.
    """
    with open(path) as f:
        index = json.load(f)
    if len(index) != 1:
        raise ValueError(f"{path}: expected one agent, found {sorted(index)}")
    [cases] = index.values()
    return cases


def countBehaviors(cases: Mapping[str, Mapping[str, Any]]) -> Counter[str]:
    """
    How many cases got each verdict (C{behavior}).
    """
    return Counter(case["behavior"] for case in cases.values())


def summaryLine(counts: Counter[str], missing: int = 0) -> str:
    """
    ``N cases: OK a, NON-STRICT b, INFORMATIONAL c, UNIMPLEMENTED d, FAILED e``,
    with ``, MISSING m`` and ``, OTHER o`` only when there are such cases.
    """
    line = f"{sum(counts.values())} cases: " + ", ".join(f"{b} {counts[b]}" for b in BEHAVIORS)
    other = sum(n for b, n in counts.items() if b not in BEHAVIORS)
    if missing:
        line += f", MISSING {missing}"
    if other:
        line += f", OTHER {other}"
    return line


def passed(counts: Counter[str], missing: int = 0) -> bool:
    """
    Whether a run counts as conformant: only OK and INFORMATIONAL verdicts.
    """
    return missing == 0 and all(b in ("OK", "INFORMATIONAL") for b in counts if counts[b])


def notOk(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """
    The ids of the cases of each verdict other than OK, in case order.
    """
    byBehavior: dict[str, list[str]] = {}
    for caseId in sorted(cases, key=caseKey):
        behavior = cases[caseId]["behavior"]
        if behavior != "OK":
            byBehavior.setdefault(behavior, []).append(caseId)
    return byBehavior


def writeSpec(outdir: str, url: str, cases: Sequence[str] | None, exclude: Sequence[str] | None) -> str:
    """
    The committed spec, pointed at C{url} and writing into the current
    directory of wstest (C{outdir}); returns its file name there.
    """
    with open(SPEC) as f:
        spec = json.load(f)
    spec["outdir"] = "."
    for server in spec["servers"]:
        server["url"] = url
    if cases:
        spec["cases"] = list(cases)
    if exclude:
        spec["exclude-cases"] = list(exclude)
    with open(os.path.join(outdir, "fuzzingclient.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return "fuzzingclient.json"


def runWstest(command: Sequence[str], outdir: str, spec: str, timeout: float) -> int:
    """
    Run C{command -m fuzzingclient -s spec} in C{outdir}, its output into
    C{wstest.log} there.

    @return: its exit status; -1 if it took longer than C{timeout} seconds
        (it is killed: wstest writes its reports only at the end, so a hung
        run would otherwise never finish).
    """
    with open(os.path.join(outdir, "wstest.log"), "w") as log:
        process = subprocess.Popen(
            [*command, "-m", "fuzzingclient", "-s", spec], cwd=outdir, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -1


def expectedCases(outdir: str) -> int | None:
    """
    How many cases wstest said it would run.
    """
    try:
        with open(os.path.join(outdir, "wstest.log"), errors="replace") as f:
            match = re.search(r"will run (\d+) test cases", f.read())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def serverErrors(output: str) -> int:
    """
    How many tracebacks the server logged.
    """
    return output.count("Traceback (most recent call last)")


def patterns(text: str | None) -> list[str] | None:
    """
    C{"12.*, 13.*"} -> C{["12.*", "13.*"]}; nothing given -> C{None}.
    """
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def parseArguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.run",
        description="Run the Autobahn testsuite (fuzzingclient) against twistd -n realtime.",
    )
    parser.add_argument(
        "--wstest",
        default=os.environ.get("WSTEST", "wstest"),
        help="command that runs wstest, split like a shell would (default: $WSTEST, else 'wstest')",
    )
    parser.add_argument("--outdir", default="autobahn-report", help="where the reports go (default autobahn-report)")
    parser.add_argument("--cases", help="comma-separated case patterns to run (default: the spec's, all)")
    parser.add_argument("--exclude", help="comma-separated case patterns to skip, e.g. '12.*,13.*'")
    parser.add_argument("--routing", default="echo", help="routing plugin of the testee (default echo)")
    parser.add_argument("--url", help="test this running server instead of starting the testee")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds wstest may take (default 3600)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Start the testee, run wstest, summarise; see the module docstring.
    """
    args = parseArguments(argv)
    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    for old in ("index.json", "index.html", "*_case_*.json", "*_case_*.html", "server.log"):
        for path in glob.glob(os.path.join(outdir, old)):
            os.remove(path)

    server = None
    url = args.url
    if url is None:
        server = ServerProcess(
            "--port", "tcp:0:interface=127.0.0.1", *testeeArguments(args.routing), defaultPorts=False, apiKey=None
        )
        try:
            server.start(expect=("port",))
        except RuntimeError as e:
            print(f"conformance: the testee did not start: {e}", file=sys.stderr)
            return 2
        url = server.url("/")
    spec = writeSpec(outdir, url, patterns(args.cases), patterns(args.exclude))
    print(f"conformance: wstest -> {url}, reports in {outdir}", file=sys.stderr)
    started = time.monotonic()
    try:
        status = runWstest(shlex.split(args.wstest), outdir, spec, args.timeout)
    except OSError as e:
        print(f"conformance: cannot run {args.wstest!r}: {e}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
            with open(os.path.join(outdir, "server.log"), "w") as f:
                f.write(server.output + "\n")
    elapsed = time.monotonic() - started

    ok = True
    if status != 0:
        ok = False
        print(f"conformance: wstest {'timed out' if status == -1 else f'exited with {status}'}", file=sys.stderr)
    index = os.path.join(outdir, "index.json")
    cases = readIndex(index) if os.path.exists(index) else {}
    if not cases:
        print(f"conformance: no results in {index} (see {outdir}/wstest.log)", file=sys.stderr)
    expected = expectedCases(outdir)
    missing = max(expected - len(cases), 0) if expected is not None else (0 if cases else 1)
    counts = countBehaviors(cases)
    for behavior, ids in notOk(cases).items():
        print(f"conformance: {behavior}: {' '.join(ids)}", file=sys.stderr)
    if server is not None and (errors := serverErrors(server.output)):
        ok = False
        print(f"conformance: the server logged {errors} tracebacks (see {outdir}/server.log)", file=sys.stderr)
    print(f"conformance: wstest took {elapsed:.0f} s", file=sys.stderr)
    print(summaryLine(counts, missing))
    return 0 if ok and passed(counts, missing) else 1


if __name__ == "__main__":
    sys.exit(main())
