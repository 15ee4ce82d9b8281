"""Generate memphis_sync's public classes from the async ones, so the two cannot drift.

``_memphis_async/{_connection,_consumer,_producer}.py`` are the one source of Connection,
Station, Producer, Consumer and Message. This script rewrites each into a blocking module in
``memphis_sync/`` with a handful of textual rules (``async def`` -> ``def``, ``await x`` -> ``x``,
async iteration and context-manager names -> their blocking names), then formats it with ruff.
The blocking engine (``memphis_sync/_driver.py``) offers the same methods as the async driver,
which is what makes the rewrite this simple.

    python scripts/unasync.py          # regenerate
    python scripts/unasync.py --check  # exit 1 if a generated file is stale (run by make test)

Every rule must be used at least once over all files: a rule that stopped matching means the
source changed shape and the output deserves a look. httpcore keeps its sync tree the same way.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "_memphis_async"
TARGET = ROOT / "memphis_sync"
FILES = ("_connection.py", "_consumer.py", "_producer.py")

RULES: list[tuple[str, str]] = [
    (
        r"\basync def __aiter__\(self\) -> AsyncGenerator\[Message, None\]",
        "def __iter__(self) -> Generator[Message, None, None]",
    ),
    (r"\basync def __aenter__\b", "def __enter__"),
    (r"\basync def __aexit__\b", "def __exit__"),
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
    (r"\bAwaitable\[None\] \| None\b", "None"),
    (
        r"^from collections\.abc import AsyncGenerator, Awaitable, Callable$",
        "from collections.abc import Callable, Generator",
    ),
]


def banner(name: str) -> str:
    return (
        f"# GENERATED from _memphis_async/{name} by scripts/unasync.py: do not edit.\n"
        "# Edit the async source, then run `python scripts/unasync.py` (make test checks it).\n"
    )


def convert(text: str, name: str, used: set[int]) -> str:
    for index, (pattern, replacement) in enumerate(RULES):
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count:
            used.add(index)
    return banner(name) + text


def ruff_format(text: str, path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail on a stale generated file")
    args = parser.parse_args()
    used: set[int] = set()
    stale: list[str] = []
    for name in FILES:
        target = TARGET / name
        generated = ruff_format(convert((SOURCE / name).read_text("utf-8"), name, used), target)
        current = target.read_text("utf-8") if target.exists() else ""
        if generated != current:
            stale.append(str(target.relative_to(ROOT)))
            if not args.check:
                target.write_text(generated, "utf-8")
    unused = [RULES[i][0] for i in range(len(RULES)) if i not in used]
    if unused:
        print(f"unasync: rules that matched nothing: {unused}", file=sys.stderr)
        return 1
    if stale and args.check:
        print(
            f"unasync: stale generated files {stale}: run `python scripts/unasync.py`",
            file=sys.stderr,
        )
        return 1
    for path in stale:
        print(f"unasync: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
