"""memphis_sync's generated classes (``scripts/unasync.py``): current, line for line with their
async source, and documented for the blocking API.

* the committed files are what the script generates now;
* the code rules rewrite code only, never a comment or a string;
* line N of each is line N of its source, so every function starts on the same line (a blocking
  traceback points at the async source);
* no docstring a ``memphis_sync`` user can read (``help()``, the API reference) names an
  async-only concept: tasks, nurseries, cancellation, ``await``, coroutines, event loops.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import memphis_sync

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "unasync.py"
RENAMED = {"__aiter__": "__iter__", "__aenter__": "__enter__", "__aexit__": "__exit__"}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unasync = _load_script()


def test_generated_files_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_code_rules_leave_comments_and_strings_alone() -> None:
    # A regex over whole lines once turned the comment "no await in here" into "no in here".
    source = (
        unasync.MARKER.format(name="_example.py")
        + "async def run() -> None:\n"
        + "    # no await in here: the text says why\n"
        + '    log("await the __aenter__ of it")\n'
        + "    await step()  # then await nothing else\n"
        + "    async with lock:\n"
        + "        pass\n"
    )
    generated = unasync.convert(source, "_example.py", set())
    assert generated.splitlines()[1:] == [
        "def run() -> None:",
        "    # no await in here: the text says why",
        '    log("await the __aenter__ of it")',
        "    step()  # then await nothing else",
        "    with lock:",
        "        pass",
    ]


def _definitions(path: Path) -> dict[str, int]:
    """The line of every function and class of a module, by qualified name."""
    lines: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                for async_name, sync_name in RENAMED.items():
                    name = name.replace(async_name, sync_name)
                lines[name] = child.lineno
                walk(child, name + ".")

    walk(ast.parse(path.read_text("utf-8")), "")
    return lines


@pytest.mark.parametrize("name", unasync.FILES)
def test_line_for_line(name: str) -> None:
    source = (ROOT / "_memphis_async" / name).read_text("utf-8").splitlines()
    generated = (ROOT / "memphis_sync" / name).read_text("utf-8").splitlines()
    assert len(generated) == len(source)
    # Overloads share a name: the last definition of each, the implementation, is compared.
    async_lines = _definitions(ROOT / "_memphis_async" / name)
    sync_lines = _definitions(ROOT / "memphis_sync" / name)
    assert sync_lines == async_lines


def _public_docs() -> list[tuple[str, str]]:
    """(where, docstring) for memphis_sync and everything public it exports."""
    docs = [("memphis_sync", memphis_sync.__doc__ or "")]
    for name in memphis_sync.__all__:
        obj = getattr(memphis_sync, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        docs.append((name, inspect.getdoc(obj) or ""))
        if inspect.isclass(obj) and obj.__module__.startswith("memphis_sync"):
            for member, value in vars(obj).items():
                if member.startswith("_") and member not in ("__iter__", "__enter__"):
                    continue
                target = value.fget if isinstance(value, property) else value
                docs.append((f"{name}.{member}", inspect.getdoc(target) or ""))
    return docs


def test_blocking_docs_name_no_async_concept() -> None:
    found = [
        f"{where}: {match[0]!r}"
        for where, doc in _public_docs()
        for match in unasync.ASYNC_ONLY.finditer(doc)
    ]
    assert not found


def test_the_async_docs_still_say_it() -> None:
    # The phrases exist in the async source: the trio and asyncio docs keep their own truth.
    import memphis_trio

    assert "task" in (inspect.getdoc(memphis_trio.Consumer.consume) or "")
    assert "thread" in (inspect.getdoc(memphis_sync.Consumer.consume) or "")
