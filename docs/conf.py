"""Sphinx configuration: ``make docs`` builds docs/_build/html with warnings as errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Import the packages from this checkout, so the build documents the code beside it even when
# the installed copy is another one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    private name (``memphis_core._errors.MemphisError``) as an alias, once per page. Those
    aliases collide by design; a duplicate of a public name is still reported.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if "duplicate object description" not in message or not record.args:
            return True
        name = str(record.args[0])  # type: ignore[index]
        return not any(part.startswith("_") for part in name.split("."))


def setup(app: object) -> None:
    logging.getLogger("sphinx.sphinx.domains.python").addFilter(_SharedCanonicalNames())
