"""Run every ``fuzz/fuzz_*.py`` atheris harness for a while; fail if any of them crashes.

Usage::

    .venv/bin/python fuzz/run_all.py                  # 10 s per harness (what `make test` runs)
    .venv/bin/python fuzz/run_all.py --seconds 600    # long run (`make fuzz`)
    .venv/bin/python fuzz/run_all.py --runs 5000      # a fixed number of inputs instead
    .venv/bin/python fuzz/run_all.py parser headers   # only some harnesses

Each harness ``fuzz_<name>.py`` reads its committed seeds from ``fuzz/corpus/<name>/`` (never
written to) and keeps what it discovers in ``fuzz/corpus-out/<name>/`` (git-ignored), so runs
build on each other. The NATS dictionary ``fuzz/nats.dict`` is passed to every harness. A crash
leaves its input in ``fuzz/corpus-out/crashes/``; reproduce it with
``.venv/bin/python fuzz/fuzz_<name>.py <that file>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus-out"


def harnesses(selected: list[str]) -> list[tuple[str, Path]]:
    found = sorted((p.stem.removeprefix("fuzz_"), p) for p in HERE.glob("fuzz_*.py"))
    if selected:
        unknown = set(selected) - {name for name, _ in found}
        if unknown:
            raise SystemExit(f"no such harness: {', '.join(sorted(unknown))}")
        found = [(name, path) for name, path in found if name in selected]
    return found


def run_one(name: str, path: Path, args: argparse.Namespace) -> bool:
    out = OUT / name
    crashes = OUT / "crashes"
    out.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    budget = [f"-atheris_runs={args.runs}"] if args.runs else [f"-max_total_time={args.seconds}"]
    if args.seed is not None:
        budget.append(f"-seed={args.seed}")
    command = [
        sys.executable,
        str(path),
        *budget,
        f"-dict={HERE / 'nats.dict'}",
        f"-artifact_prefix={crashes}/{name}-",
        f"-rss_limit_mb={args.rss_limit_mb}",
        "-timeout=30",
        "-print_final_stats=1",
        str(out),  # the first directory receives new inputs...
    ]
    seeds = HERE / "corpus" / name
    if seeds.is_dir():
        command.append(str(seeds))  # ...the committed seeds are only read
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    log = result.stderr + result.stdout
    execs = next(
        (
            line.rsplit(":", 1)[1].strip()
            for line in log.splitlines()
            if line.startswith("stat::number_of_executed_units")
        ),
        "?",
    )
    ok = result.returncode == 0
    print(f"{'ok  ' if ok else 'FAIL'} {name:<12} {elapsed:6.1f} s  {execs:>9} inputs", flush=True)
    if not ok:
        print("\n".join(log.splitlines()[-40:]), file=sys.stderr)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="harness names (default: all)")
    parser.add_argument("--seconds", type=int, default=10, help="time budget per harness")
    parser.add_argument("--runs", type=int, default=0, help="number of inputs per harness")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument(
        "--seed", type=int, default=None, help="fixed mutation seed: with --runs, a repeatable run"
    )
    args = parser.parse_args()
    results = [run_one(name, path, args) for name, path in harnesses(args.names)]
    if not results:
        raise SystemExit("no fuzz/fuzz_*.py harness found")
    if not all(results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
