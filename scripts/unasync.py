"""Generate memphis_sync's public classes from the async ones, so the two cannot drift.

``_memphis_async/{_connection,_consumer,_producer}.py`` are the one source of Connection,
Station, Producer, Consumer and Message. This script rewrites each into a blocking module in
``memphis_sync/`` with two tables of textual rules, both applied line by line:

* ``RULES`` rewrite the code: ``async def`` -> ``def``, ``await x`` -> ``x``, async iteration
  and context-manager names -> their blocking names;
* ``PHRASES`` rewrite the docs: each pair is a phrase of the async source's docstrings (true
  for trio and asyncio) and the phrase that says the same of the blocking API (threads, not
  tasks). A phrase never spans a line break.

Line N of a generated file is line N of its source, rewritten: no formatter runs on the output
(ruff's formatter skips these files, see pyproject.toml), so a blocking traceback points at the
same line in the async source. The first line of each source is the marker that the rewrite
turns into the "generated, do not edit" banner.

After the rewrite, the docs of the output (docstrings and ``#:`` comments) must hold none of the
async-only words of ``ASYNC_ONLY`` (task, nursery, cancel, await, coroutine...): a sentence
that would say something false of the blocking API fails the run, and the fix is a pair in
``PHRASES``.

    python scripts/unasync.py          # regenerate
    python scripts/unasync.py --check  # exit 1 if a generated file is stale (run by make test)

Every rule and every phrase must be used at least once over all files: a rule that stopped
matching means the source changed shape and the output deserves a look. httpcore keeps its
sync tree the same way.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "_memphis_async"
TARGET = ROOT / "memphis_sync"
FILES = ("_connection.py", "_consumer.py", "_producer.py")

#: Line 1 of each async source, and what it becomes in the generated file.
MARKER: Final = (
    "# memphis_sync/{name} is generated from this file: run scripts/unasync.py after an edit.\n"
)
BANNER: Final = (
    "# GENERATED from _memphis_async/{name} by scripts/unasync.py: do not edit this copy.\n"
)

RULES: Final[list[tuple[str, str]]] = [
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

#: (async wording, blocking wording): literal phrases of the docs, each within one line.
PHRASES: Final[list[tuple[str, str]]] = [
    ("Use it from the event loop that opened it.", "Any thread may use it."),
    ("Leaving ``async with`` does the same.", "Leaving ``with`` does the same."),
    (
        "The close also completes when the caller is cancelled.",
        "The call blocks its thread until the close is complete.",
    ),
    (
        "A plain or coroutine function; it runs in a task of the connection.",
        "A plain function; it runs in a thread of the connection.",
    ),
    (
        "They are coroutines for symmetry with every call that puts bytes on the wire.",
        "They return as soon as the publish is queued.",
    ),
    (", a plain or coroutine function.", ", a plain function."),
    ("(by a cancelled fetch,", "(by an interrupted fetch,"),
    ("(cancellation, stop_consume)", "(an interrupt, stop_consume)"),
    ("cancelled (a timeout, a cancel scope, KeyboardInterrupt)", "interrupted (KeyboardInterrupt)"),
    ("``contextlib.aclosing(aiter(consumer))``", "``contextlib.closing(iter(consumer))``"),
    (
        "The loop runs as a task of the connection, in its nursery or task group.",
        "The loop runs in a thread of the connection.",
    ),
    ("The handler may be a coroutine function.", "The handler is a plain function."),
    ("Any number of tasks may produce on", "Any number of threads may produce on"),
    ("Cancelling a synchronous produce", "Interrupting a synchronous produce"),
]

#: Words that are false of the blocking API. ``async`` is allowed only in ``async_produce`` and
#: "async produce", the name of the non-blocking produce that memphis_sync has too.
ASYNC_ONLY: Final = re.compile(
    r"\b(?:await\w*|coroutines?|tasks?|task group|nurser(?:y|ies)|cancel\w*|event loop|trio"
    r"|asyncio|aclosing|aiter|anext|async(?![ _]produce))\b",
    re.IGNORECASE,
)


def _rewrite(line: str, table: list[tuple[str, str]], used: set[str], *, literal: bool) -> str:
    for pattern, replacement in table:
        if literal:
            count = line.count(pattern)
            line = line.replace(pattern, replacement)
        else:
            line, count = re.subn(pattern, replacement, line)
        if count:
            used.add(pattern)
    return line


def convert(text: str, name: str, used: set[str]) -> str:
    """The blocking module for the async source ``text``, line for line."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0] != MARKER.format(name=name):
        raise SystemExit(
            f"unasync: _memphis_async/{name} must start with {MARKER.format(name=name)!r}"
        )
    out = [BANNER.format(name=name)]
    for line in lines[1:]:
        code = _rewrite(line, RULES, used, literal=False)
        out.append(_rewrite(code, PHRASES, used, literal=True))
    if len(out) != len(lines):
        raise SystemExit(f"unasync: {name}: {len(out)} lines generated from {len(lines)}")
    return "".join(out)


def doc_lines(text: str) -> list[tuple[int, str]]:
    """The docs of a module, as (line number, text): its docstrings and ``#:`` comments."""
    found = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.lstrip().startswith("#:")
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                first = body[0].lineno
                docstring = ast.get_source_segment(text, body[0]) or ""
                found.extend(enumerate(docstring.splitlines(), start=first))
    return found


def async_words(text: str, name: str) -> list[str]:
    """Each line of the docs of ``text`` that names an async-only concept, described."""
    return [
        f"memphis_sync/{name}:{number}: {match[0]!r} in {line.strip()!r}"
        for number, line in doc_lines(text)
        for match in ASYNC_ONLY.finditer(line)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail on a stale generated file")
    args = parser.parse_args()
    used: set[str] = set()
    stale: list[str] = []
    problems: list[str] = []
    outputs: dict[str, str] = {}
    for name in FILES:
        outputs[name] = generated = convert((SOURCE / name).read_text("utf-8"), name, used)
        problems += async_words(generated, name)
    unused = [pattern for pattern, _ in RULES + PHRASES if pattern not in used]
    if unused:
        print(f"unasync: rules that matched nothing: {unused}", file=sys.stderr)
        return 1
    if problems:
        print(
            "unasync: async-only words in the blocking docs (add a pair to PHRASES):",
            file=sys.stderr,
        )
        print("\n".join(problems), file=sys.stderr)
        return 1
    for name, generated in outputs.items():
        target = TARGET / name
        if generated != (target.read_text("utf-8") if target.exists() else ""):
            stale.append(str(target.relative_to(ROOT)))
            if not args.check:
                target.write_text(generated, "utf-8")
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
