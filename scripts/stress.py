"""Run the timing-sensitive suites repeatedly with every core busy: a flaky test shows up here.

    make stress                      # STRESS_RUNS=3 runs (default) of the three suites
    STRESS_RUNS=1 make stress STRESS_ARGS="-k leaders"
    python scripts/stress.py --runs 2 -- -k "kill or failover"

Each run is one ``pytest`` of tests/cluster, tests/broker and tests/conformance while one
busy-looping hog process per core (``os.cpu_count()``) competes for the CPU. Every failing or
erroring test id is printed with its run number; the exit status is 1 if any run had one,
0 otherwise. Not part of ``make test``: it takes several times the suites' own run time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
SUITES: Final = ("tests/cluster", "tests/broker", "tests/conformance")


def _hog() -> None:
    """Burn one core until terminated."""
    n = 0
    while True:
        n = (n * 31 + 7) % 1_000_003


def _failures(report: Path) -> list[str]:
    """Test ids (``path::name``) that failed or errored in a JUnit XML report."""
    if not report.exists():
        return []
    out: list[str] = []
    for case in ET.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("classname", "").replace(".", "/")
            out.append(f"{path}.py::{case.get('name')}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--runs", type=int, default=int(os.environ.get("STRESS_RUNS", "3")), help="runs (>= 1)"
    )
    p.add_argument("--hogs", type=int, default=os.cpu_count() or 1, help="CPU hog processes")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    failed: list[tuple[int, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
            for run in range(1, args.runs + 1):
                report = Path(tmp) / f"run-{run}.xml"
                cmd = [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={report}",
                    *SUITES,
                    *args.pytest_args,
                ]
                started = time.monotonic()
                code = subprocess.call(cmd, cwd=ROOT)
                ids = _failures(report)
                if code not in (0, 5) and not ids:  # 5: nothing collected (a -k subset)
                    ids = [f"(pytest exited {code} without a report of which test)"]
                failed += [(run, i) for i in ids]
                took = time.monotonic() - started
                print(f"stress run {run}/{args.runs}: {len(ids)} failure(s) in {took:.0f} s")
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()
    for run, test_id in failed:
        print(f"FAILED (run {run}) {test_id}")
    print(f"stress: {len(failed)} failure(s) in {args.runs} run(s) with {args.hogs} CPU hog(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
