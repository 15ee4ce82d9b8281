"""Generate memphis_sync's public classes from the async ones, so the two cannot drift.

``_memphis_async/{_connection,_consumer,_producer}.py`` are the one source of Connection,
Station, Producer, Consumer and Message. This script rewrites each into a blocking module in
``memphis_sync/`` by editing its tokens (``tokenize``), so code rules never touch a comment or
a string and doc rules never touch code:

* the code: the ``async`` of ``async def``/``for``/``with`` and every ``await`` keyword are
  removed; the names of ``RENAMES`` (the async protocols' dunders) are renamed; the token runs
  of ``SEQUENCES`` (the few annotations whose blocking type is not a rename) are replaced;
* the docs: in docstrings and comments, each pair of ``PHRASES`` replaces a phrase of the
  async source (true for trio and asyncio) by one that says the same of the blocking API
  (threads, not tasks). A phrase never spans a line break.

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

Every rename, sequence and phrase must be used at least once over all files: a rule that
stopped matching means the source changed shape and the output deserves a look; and the output
must hold no ``async``/``await`` construct. httpcore keeps its sync tree the same way.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "_memphis_async"
TARGET = ROOT / "memphis_sync"
FILES = ("_api.py", "_connection.py", "_consumer.py", "_producer.py")

#: Line 1 of each async source, and what it becomes in the generated file.
MARKER: Final = (
    "# memphis_sync/{name} is generated from this file: run scripts/unasync.py after an edit.\n"
)
BANNER: Final = (
    "# GENERATED from _memphis_async/{name} by scripts/unasync.py: do not edit this copy.\n"
)

#: Names of the async API and their blocking counterparts, renamed wherever they are code.
RENAMES: Final[dict[str, str]] = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
}

#: Code whose blocking form is not a rename: (async tokens, blocking text). A pattern matches a
#: run of code tokens (whitespace between them does not matter) within one line.
SEQUENCES: Final[list[tuple[str, str]]] = [
    ("AsyncGenerator[Message, None]", "Generator[Message, None, None]"),
    ("Awaitable[None] | None", "None"),
    ("AsyncGenerator, Awaitable, Callable", "Callable, Generator"),
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
    (
        "TypeError: memphis_sync only: ``handler`` is a coroutine function, which no",
        "TypeError: ``handler`` is what ``inspect.iscoroutinefunction`` accepts, which no",
    ),
    ("(by a cancelled fetch,", "(by an interrupted fetch,"),
    ("``while batch := await consumer.fetch()``", "``while batch := consumer.fetch()``"),
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


#: What an ``async`` keyword may introduce.
_ASYNC_BLOCKS: Final = frozenset({"def", "for", "with"})


def _code(tokens: list[tokenize.TokenInfo]) -> list[tokenize.TokenInfo]:
    """The tokens that are code: no comments, strings, line breaks or indentation."""
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT}
    skip |= {tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
    return [token for token in tokens if token.type not in skip]


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(text).readline))


# An edit: (start, end, replacement), positions as tokenize gives them (row from 1, column).
_Edit = tuple[tuple[int, int], tuple[int, int], str]


def _code_edits(tokens: list[tokenize.TokenInfo], used: set[str]) -> list[_Edit]:
    code = _code(tokens)
    patterns = [([t.string for t in _code(_tokens(a))], a, b) for a, b in SEQUENCES]
    edits: list[_Edit] = []
    index = 0
    while index < len(code):
        token = code[index]
        following = code[index + 1] if index + 1 < len(code) else None
        for strings, pattern, replacement in patterns:
            run = code[index : index + len(strings)]
            if [t.string for t in run] == strings and run[0].start[0] == run[-1].end[0]:
                edits.append((run[0].start, run[-1].end, replacement))
                used.add(pattern)
                index += len(strings)
                break
        else:
            if token.type == tokenize.NAME and (
                token.string == "await"
                or (token.string == "async" and following and following.string in _ASYNC_BLOCKS)
            ):
                # The keyword and the blank after it, on its line.
                assert following is not None
                end = following.start if following.start[0] == token.start[0] else token.end
                edits.append((token.start, end, ""))
            elif token.type == tokenize.NAME and token.string in RENAMES:
                edits.append((token.start, token.end, RENAMES[token.string]))
                used.add(token.string)
            index += 1
    return edits


def _doc_edits(tokens: list[tokenize.TokenInfo], used: set[str]) -> list[_Edit]:
    edits: list[_Edit] = []
    for token in tokens:
        if token.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        text = token.string
        for phrase, replacement in PHRASES:
            if phrase in text:
                text = text.replace(phrase, replacement)
                used.add(phrase)
        if text != token.string:
            edits.append((token.start, token.end, text))
    return edits


def convert(text: str, name: str, used: set[str]) -> str:
    """The blocking module for the async source ``text``, line for line."""
    marker = MARKER.format(name=name)
    if not text.startswith(marker):
        raise SystemExit(f"unasync: _memphis_async/{name} must start with {marker!r}")
    lines = text.splitlines(keepends=True)
    tokens = _tokens(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out = text
    edits = _code_edits(tokens, used) + _doc_edits(tokens, used)
    for (row, col), (end_row, end_col), replacement in sorted(edits, reverse=True):
        out = out[: starts[row - 1] + col] + replacement + out[starts[end_row - 1] + end_col :]
    out = BANNER.format(name=name) + out[len(marker) :]
    if out.count("\n") != text.count("\n"):
        raise SystemExit(f"unasync: {name}: the output is not line for line with its source")
    for node in ast.walk(ast.parse(out)):
        if isinstance(node, ast.Await | ast.AsyncFunctionDef | ast.AsyncFor | ast.AsyncWith):
            raise SystemExit(f"unasync: {name}:{node.lineno}: still async after the rewrite")
    return out


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
    rules = [*RENAMES, *(pattern for pattern, _ in SEQUENCES + PHRASES)]
    unused = [rule for rule in rules if rule not in used]
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
