"""The core's layout rules, checked on its source: layers, allowed imports, no cycles.

* ``memphis_core/nats`` (wire + session) never imports the Memphis layer, and its source names
  no Memphis convention (user, connection name, ``memphis:`` texts): it knows only NATS;
* only ``nats/_commands.py`` lays out a PUB/HPUB;
* nothing in ``memphis_core`` imports a module that does I/O, threads or reads a clock;
* the modules import each other without cycles, ``TYPE_CHECKING`` imports included;
* importing the package loads nothing outside the standard library.
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "memphis_core"
BANNED = {"socket", "ssl", "select", "selectors", "threading", "asyncio", "trio", "time"}


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return trees


def _imports(name: str, tree: ast.Module, *, is_package: bool) -> set[str]:
    """Every module ``name`` imports, absolute, wherever the statement sits."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import _x`` imports the submodule _x.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


TREES = _modules()
PACKAGES = {
    name for name in TREES if (CORE.parent / name.replace(".", "/") / "__init__.py").exists()
}
IMPORTS = {name: _imports(name, tree, is_package=name in PACKAGES) for name, tree in TREES.items()}


def test_both_layers_exist() -> None:
    assert "memphis_core.nats._session" in TREES
    assert "memphis_core.memphis._client" in TREES


@pytest.mark.parametrize("module", sorted(m for m in TREES if m.startswith("memphis_core.nats")))
def test_nats_layer_never_imports_the_memphis_layer(module: str) -> None:
    bad = sorted(i for i in IMPORTS[module] if i.startswith("memphis_core.memphis"))
    assert not bad, f"{module} imports the Memphis layer: {bad}"


# Allowed: the package's own name and the library-wide error classes the NATS layer defines.
_ALLOWED_MEMPHIS = re.compile(r"memphis_core|Memphis\w*Error")


@pytest.mark.parametrize("path", sorted((CORE / "nats").glob("*.py")), ids=lambda p: p.name)
def test_nats_layer_source_knows_no_memphis_word(path: Path) -> None:
    # Imports alone cannot show a Memphis convention copied into the NATS layer (a
    # ``<username>$<account>`` user, a ``"memphis: ..."`` text): the words can.
    text = _ALLOWED_MEMPHIS.sub("", path.read_text(encoding="utf-8"))
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if re.search(r"memphis|account_id|username|station|\bdls\b", line, re.IGNORECASE)
    ]
    assert not found, "Memphis words in the NATS layer:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_one_pub_writer(path: Path) -> None:
    # One encoder lays out PUB and HPUB (``_commands._frame``); a second copy would drift.
    if path == CORE / "nats" / "_commands.py":
        return
    assert not re.search(rb'b"H?PUB ', path.read_bytes()), f"{path} writes a PUB itself"


@pytest.mark.parametrize("module", sorted(TREES))
def test_no_io_clock_or_thread_imports(module: str) -> None:
    bad = sorted(i for i in IMPORTS[module] if i.split(".")[0] in BANNED)
    assert not bad, f"{module} imports {bad}: the core does no I/O and reads no clock"


def _internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, imported in IMPORTS.items():
        # A package's __init__ only re-exports; edges from it would make every module that is
        # imported through the package look cyclic.
        if name in PACKAGES:
            continue
        graph[name] = {i for i in imported if i in TREES and i != name and i not in PACKAGES}
    return graph


def test_no_import_cycles() -> None:
    graph = _internal_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_cycle_detector_can_fail() -> None:
    # The check above walks real edges: a graph with a known cycle must be reported.
    IMPORTS_BACKUP = dict(IMPORTS)
    try:
        IMPORTS["memphis_core.nats._frames"] = {
            *IMPORTS["memphis_core.nats._frames"],
            "memphis_core.nats._parser",
        }
        with pytest.raises(pytest.fail.Exception, match="import cycle"):
            test_no_import_cycles()
    finally:
        IMPORTS.clear()
        IMPORTS.update(IMPORTS_BACKUP)


def test_importing_the_core_loads_only_the_standard_library() -> None:
    code = (
        "import sys, memphis_core\n"
        "std = sys.stdlib_module_names\n"
        # memphis_core__mypyc: the compiled build's runtime library, when built (docs/compiled.md)
        "ours = {'memphis_core', 'memphis_core__mypyc'}\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} - std - ours)\n"
        "print(','.join(b for b in bad if not b.startswith('_')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "", f"memphis_core imported non-stdlib modules: {out}"


def test_tests_here_cannot_use_the_network() -> None:
    # tests/core/conftest.py's guard: a core test that dials a server or takes a port fails.
    with socket.socket() as sock:
        with pytest.raises(AssertionError, match="network-free"):
            sock.connect(("127.0.0.1", 4222))
        with pytest.raises(AssertionError, match="network-free"):
            sock.bind(("127.0.0.1", 0))
    with pytest.raises(AssertionError, match="network-free"):
        socket.create_connection(("127.0.0.1", 4222), timeout=1)
