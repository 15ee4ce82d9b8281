"""Compile ``memphis_core`` with mypyc, in place: the optional compiled build (docs/compiled.md).

Each compiled module's extension (``<module>.cpython-*.so``) lands next to its ``.py``, and the
modules' shared runtime library (``memphis_core__mypyc.cpython-*.so``) at the repository root. The
import system prefers an extension to a source file of the same name, so with the editable install
every importer (frontends, tests, bench) gets the compiled core; ``--clean`` removes the extensions
and the pure-Python core is back. The sources are unchanged: the pure core stays the reference.

Run: ``.venv/bin/python scripts/build_mypyc.py [--clean]`` (``make mypyc`` / ``make mypyc-clean``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "memphis_core"
# The modules' shared library: memphis_core__mypyc.<suffix>, a top-level module. mypyc derives each
# compiled module's ``__file__`` from this library's directory, so it must sit at the import root.
GROUP = "memphis_core"
BUILD_DIR = ROOT / "build" / "mypyc"

# Left interpreted:
# * the error modules: their classes derive from a MemphisError and a builtin exception at once
#   (``MessageTypeError(MemphisSchemaError, TypeError)``, ``MissingExtraError(..., ImportError)``),
#   which mypyc's native classes cannot do; exceptions are off the data path;
# * ``_deliveries.py``: the frontends subclass its ``MessageView`` in interpreted code, which
#   mypyc allows only with a decorator from ``mypy_extensions``, not a standard-library module;
# * ``_options.py``: it validates what the caller passed, wrong types included. Compiled, a
#   parameter of the wrong type would raise mypyc's ``TypeError`` at the call instead of the
#   ``LocalProtocolError`` naming the option;
# * the packages' ``__init__.py``: they only re-export.
INTERPRETED = frozenset(
    {"_errors.py", "_validators.py", "_deliveries.py", "_options.py", "__init__.py"}
)


def sources() -> list[str]:
    """The modules to compile, relative to the repository root, sorted."""
    found = sorted((ROOT / PACKAGE).rglob("*.py"))
    return [str(p.relative_to(ROOT)) for p in found if p.name not in INTERPRETED]


def built_files() -> Iterator[Path]:
    """Every extension a previous build left in the tree."""
    yield from (ROOT / PACKAGE).rglob("*.so")
    yield from ROOT.glob(f"{GROUP}__mypyc.*")


def clean() -> None:
    for path in built_files():
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def _tolerate_mypyc_text_signature_bug() -> None:
    # mypyc (seen with mypy 2.4.1) writes a ``__text_signature__`` for each compiled method and
    # checks it with ``inspect.Signature``. For a method that has an optional float argument
    # (passed with a hidden "bitmap" argument) and a required keyword-only argument after a
    # defaulted one (``Session.request(subject, payload=b"", *, now, timeout, ..., delay=0.0)``)
    # it marks every argument positional-only, and the check raises "non-default argument follows
    # default argument": the build stops. Only the text signature is wrong, not the compiled call.
    # Here such a method gets ``(*args, **kwargs)`` as its text signature instead, so the build
    # goes on and ``inspect.signature`` reports no false signature.
    original = inspect.Signature.__init__

    def init(self: inspect.Signature, parameters: Any = None, *args: Any, **kwargs: Any) -> None:
        try:
            original(self, parameters, *args, **kwargs)
        except ValueError:
            params = list(parameters or ())
            kept = [p for p in params[:1] if p.name.startswith("$")]
            kept += [
                inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
            ]
            original(self, kept, *args, **kwargs)

    inspect.Signature.__init__ = init  # type: ignore[method-assign]


def build() -> None:
    # Imported here: tests/core/test_compiled_build.py reads ``sources()`` without the build tools.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # noqa: PLC0415

    _tolerate_mypyc_text_signature_bug()
    clean()
    os.chdir(ROOT)  # mypycify and build_ext --inplace place files relative to the cwd
    extensions = mypycify(
        sources(),
        opt_level="3",
        group_name=GROUP,
        target_dir=str(BUILD_DIR / "c"),
    )
    # A bare Distribution, not setup(): setup() would read pyproject.toml's [project] table (this
    # project is built by hatchling) and try to discover packages.
    dist = Distribution(
        {
            "name": "memphis-core-mypyc",
            "ext_modules": extensions,
            "script_name": "build_mypyc.py",
            "script_args": [
                "build_ext",
                "--inplace",
                *("--build-temp", str(BUILD_DIR / "temp"), "--build-lib", str(BUILD_DIR / "lib")),
            ],
        }
    )
    dist.parse_command_line()
    dist.run_commands()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules only")
    args = ap.parse_args(argv)
    if args.clean:
        clean()
    else:
        build()
        print(f"compiled {len(sources())} modules of {PACKAGE} in place", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
