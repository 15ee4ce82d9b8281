"""Every public name of the three frontends has a docstring.

"Public" is what a user can reach: every name in ``__all__`` of ``memphis_sync``,
``memphis_trio`` and ``memphis_asyncio``, and every method and property (inherited ones
included) of the classes among them whose name does not start with ``_``. The API reference
(``make docs``) is generated from these docstrings, so a missing one is a hole in the docs.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from tests.support.public_api import FRONTENDS, public_members

# Members defined in memphis_core, whose docstrings are its owner's to write. Listed here so
# this test stays green meanwhile; test_known_gaps_are_still_gaps makes the list shrink as
# soon as one is documented. Keyed by class and member only, so that moving the class to
# another module of memphis_core does not matter.
KNOWN_GAPS: frozenset[str] = frozenset()


def _known_gap(key: str) -> str | None:
    module, _, member = key.rpartition(".")
    gap = f"{module.rpartition('.')[2]}.{member}"
    return gap if key.startswith("memphis_core.") and gap in KNOWN_GAPS else None


def _member_doc(raw: object) -> str | None:
    if isinstance(raw, property):
        return raw.fget.__doc__ if raw.fget is not None else None
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__.__doc__
    return getattr(raw, "__doc__", None)


def missing_docstrings(frontends: tuple[ModuleType, ...] = FRONTENDS) -> set[str]:
    missing: set[str] = set()
    for module in frontends:
        for name in module.__all__:
            obj = getattr(module, name)
            if name == "__version__":
                continue  # a str: nothing to document beyond its name
            if not (inspect.getdoc(obj) or "").strip():
                missing.add(f"{module.__name__}.{name}")
            if inspect.isclass(obj):
                for key, raw in public_members(obj).items():
                    if not (_member_doc(raw) or "").strip():
                        missing.add(key)
    return missing


def test_every_public_name_has_a_docstring() -> None:
    missing = {key for key in missing_docstrings() if _known_gap(key) is None}
    assert not missing, "public names without a docstring:\n  " + "\n  ".join(sorted(missing))


def test_known_gaps_are_still_gaps() -> None:
    fixed = KNOWN_GAPS - {_known_gap(key) for key in missing_docstrings()}
    assert not fixed, f"documented now, remove from KNOWN_GAPS: {sorted(fixed)}"


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_the_check_sees_each_frontends_classes(frontend: ModuleType) -> None:
    # Guards the test itself: if public_members found nothing (a refactor hid the classes),
    # every check above would pass vacuously.
    members = public_members(frontend.Consumer)
    assert any(key.endswith(".Consumer.fetch") for key in members)
    assert any(key.endswith(".Message.ack") for key in public_members(frontend.Message))
    assert any(key.endswith(".Producer.name") for key in public_members(frontend.Producer))


def _documented_parameters(doc: str) -> list[str]:
    """The names listed by the ``Args:`` sections of a Google-style docstring."""
    names: list[str] = []
    lines = inspect.cleandoc(doc).splitlines()
    for start, line in enumerate(lines):
        if line.strip() != "Args:":
            continue
        indent = len(line) - len(line.lstrip()) + 4
        for entry in lines[start + 1 :]:
            if entry.strip() and len(entry) - len(entry.lstrip()) < indent:
                break  # the section ended
            if len(entry) - len(entry.lstrip()) == indent and ":" in entry:
                names.append(entry.strip().split(":", 1)[0])
    return names


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_each_parameter_is_documented_once(frontend: ModuleType) -> None:
    # The API reference lists what the Args sections say: a second section (or a parameter
    # listed twice) shows every parameter twice there.
    twice: list[str] = []
    for name in frontend.__all__:
        obj = getattr(frontend, name)
        members = public_members(obj) if inspect.isclass(obj) else {name: obj}
        for key, raw in members.items():
            params = _documented_parameters(_member_doc(raw) or "")
            twice += [f"{key}: {p}" for p in set(params) if params.count(p) > 1]
    assert not twice, "documented twice:\n  " + "\n  ".join(sorted(twice))
