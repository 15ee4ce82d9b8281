"""``memphis_core``'s public names: what an embedder of the core needs, each one documented.

Internals (the parser, the session, the option dataclasses, the frontends' helpers) are imported
from the modules that define them; the package itself exports nothing else.
"""

from __future__ import annotations

import memphis_core
from memphis_core.memphis import _errors

SUBPACKAGES = {"nats", "memphis"}


def test_every_exported_name_is_documented() -> None:
    # The errors are drawn in their home's docstring (tests/core/test_errors.py checks that
    # tree); every other name has its line in memphis_core's docstring.
    doc = memphis_core.__doc__ or ""
    undocumented = [
        name
        for name in memphis_core.__all__
        if name not in _errors.__all__ and f"``{name}``" not in doc
    ]
    assert not undocumented


def test_nothing_public_outside_all() -> None:
    public = {
        name
        for name in vars(memphis_core)
        if not name.startswith("_") and name not in SUBPACKAGES and name != "annotations"
    }
    assert public <= set(memphis_core.__all__), sorted(public - set(memphis_core.__all__))
