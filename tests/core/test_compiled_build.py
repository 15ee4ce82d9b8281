"""The optional mypyc build (docs/compiled.md): when the tests run on it, they run on all of it,
and on extensions built from the current sources."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from tests.support.compiled import CORE_COMPILED

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the pure-Python core is running")


def _compiled_sources() -> list[str]:
    """What ``scripts/build_mypyc.py`` compiles, relative to the repository root."""
    spec = importlib.util.spec_from_file_location("build_mypyc", ROOT / "scripts/build_mypyc.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    sources: list[str] = script.sources()
    return sources


def _module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def test_every_module_the_build_compiles_is_imported_compiled() -> None:
    for source in _compiled_sources():
        module = importlib.import_module(_module_name(source))
        assert module.__file__ is not None
        assert not module.__file__.endswith(".py"), f"{source} is not compiled: run make mypyc"


def test_no_extension_is_older_than_its_source() -> None:
    # An extension shadows its .py: an edit made after the build would silently not run.
    stale = []
    for source in _compiled_sources():
        module = importlib.import_module(_module_name(source))
        assert module.__file__ is not None
        if Path(module.__file__).stat().st_mtime < (ROOT / source).stat().st_mtime:
            stale.append(source)
    assert stale == [], f"edited since make mypyc (rebuild, or make mypyc-clean): {stale}"
