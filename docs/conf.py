"""Sphinx configuration: ``make docs`` builds docs/_build/html with warnings as errors."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Import the packages from this checkout, so the build documents the code beside it even when
# the installed copy is another one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import memphis_core
from memphis_core import __version__

project = "memphis-sansio"
author = "memphis-sansio contributors"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Google-style docstrings ("Args:", "Raises:"), as the code writes them.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

# Headings become link targets, so protocol.md's "§4.3" sections can be linked to.
myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]

html_theme = "alabaster"
html_title = f"memphis-sansio {release}"


class _SharedCanonicalNames(logging.Filter):
    """Drop the duplicate warning for the *canonical* name of a re-exported class.

    The three frontends re-export the same objects (the errors, enums and ``TLS`` of
    ``memphis_core``; the async classes of ``_memphis_async`` in both async frontends). Each
    page documents them under its own public name, and autodoc also records the defining,
    private name (``memphis_core.memphis._errors.MemphisError``) as an alias, once per page. Those
    aliases collide by design; a duplicate of a public name is still reported.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if "duplicate object description" not in message or not record.args:
            return True
        name = str(record.args[0])  # type: ignore[index]
        return not any(part.startswith("_") for part in name.split("."))


FRONTENDS = frozenset({"memphis_sync", "memphis_trio", "memphis_asyncio"})


def _drop_frontend_module_docstrings(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    # Each API page opens with its own introduction (docs/api/*.rst); the modules' docstrings
    # say the same for help() and would repeat it.
    if what == "module" and name in FRONTENDS:
        lines.clear()


# Made by the library (connect(), create_producer()...), never by the user: their constructors
# take internal objects, so the reference shows no constructor signature for them.
MADE_FOR_YOU = frozenset({"Connecting", "Connection", "Station", "Producer", "Consumer", "Message"})


# A default written as a named constant (``timeout: float = DRAIN_TIMEOUT``): the constant is
# defined once in memphis_core, but a reader of the reference wants the number. Enum defaults
# stay as written (``RetentionType.MAX_MESSAGE_AGE_SECONDS`` says more than its value), which is
# why autodoc_preserve_defaults stays on and only numeric constants are replaced.
_CONSTANT_DEFAULT = re.compile(r"(=\s*)([A-Z][A-Z0-9_]*)\b(?![.(])")


def _constant_values(obj: object) -> Callable[[re.Match[str]], str]:
    # The constant is looked up where the documented function was written: most such constants
    # are internals of the core, not names memphis_core exports.
    namespace: dict[str, Any] = getattr(obj, "__globals__", None) or vars(memphis_core)

    def value_of(match: re.Match[str]) -> str:
        value = namespace.get(match[2])
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{match[1]}{value!r}"
        return match[0]

    return value_of


def _signature(
    app: object,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    # One handler: Sphinx takes the first non-None answer of autodoc-process-signature.
    module, _, short = name.rpartition(".")
    if what == "class" and module in FRONTENDS and short in MADE_FOR_YOU:
        return "", return_annotation
    if signature:
        rendered = _CONSTANT_DEFAULT.sub(_constant_values(obj), signature)
        if rendered != signature:
            return rendered, return_annotation
    return None


def setup(app: Any) -> None:
    logging.getLogger("sphinx.sphinx.domains.python").addFilter(_SharedCanonicalNames())
    app.connect("autodoc-process-docstring", _drop_frontend_module_docstrings)
    app.connect("autodoc-process-signature", _signature)
