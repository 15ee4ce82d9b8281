"""The errors' one home, ``memphis_core/memphis/_errors.py``: complete, and drawn truthfully.

* every exception class the library defines is exported by that module, unless it is internal
  (listed here with the place that catches it);
* the tree in its docstring is the classes' real hierarchy: each class under its real parent,
  with its other standard bases, and no class left out;
* ``memphis_core`` exports the whole set.

That each frontend exports the same classes is checked in ``tests/frontends/test_api_parity.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import memphis_core
from memphis_core.memphis import _errors
from memphis_core.memphis._errors import MemphisError

# Exception classes outside the public set, and how (if ever) a caller meets them.
INTERNAL = {
    "memphis_core.nats._parser.ParseError": "reaches callers as RemoteProtocolError, its base",
    "memphis_core.memphis._validators.Invalid": "Schema turns it into SchemaValidationError",
}
PACKAGES = (
    "memphis_core",
    "_memphis_io",
    "_memphis_async",
    "memphis_sync",
    "memphis_trio",
    "memphis_asyncio",
)


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in the library's packages, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [
            info.name for info in pkgutil.walk_packages(package.__path__, package_name + ".")
        ]
        for name in names:
            module = importlib.import_module(name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_is_public_or_named_internal() -> None:
    exceptions = defined_exceptions()
    public = {getattr(_errors, name) for name in _errors.__all__}
    stray = sorted(
        name for name, cls in exceptions.items() if cls not in public and name not in INTERNAL
    )
    assert not stray, f"exception classes outside the errors' home: {stray}"
    assert set(INTERNAL) <= set(exceptions), "an internal error was renamed: update INTERNAL"


def test_exceptions_are_defined_in_the_core_only() -> None:
    # The frontends raise the core's classes: a class of their own would be a second, unrelated
    # class for the same failure (unasync once copied one into memphis_sync).
    outside = sorted(name for name in defined_exceptions() if not name.startswith("memphis_core."))
    assert not outside


# One line of the drawn tree: 4 columns per level ("+-- ", "|   " or blanks), the class, and its
# standard bases in parentheses.
_TREE_LINE = re.compile(
    r"^    (?P<bars>(?:\+-- |\|   |    )*)(?P<name>[A-Z]\w+)(?: \((?P<bases>[\w, ]+)\))?"
)


def drawn_tree() -> dict[str, tuple[str | None, set[str]]]:
    """The docstring's tree: each class with its drawn parent and its drawn standard bases."""
    doc = _errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: list[str] = []
    drawn: dict[str, tuple[str | None, set[str]]] = {}
    for line in block.splitlines():
        match = _TREE_LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["bars"]) // 4
        del parents[depth:]
        bases = {b.strip() for b in (match["bases"] or "").split(",") if b.strip()}
        drawn[match["name"]] = (parents[-1] if parents else None, bases)
        parents.append(match["name"])
    return drawn


def test_the_docstring_draws_every_error_under_its_real_parent() -> None:
    drawn = drawn_tree()
    classes = {
        name: getattr(_errors, name)
        for name in _errors.__all__
        if isinstance(getattr(_errors, name), type)
        and issubclass(getattr(_errors, name), BaseException)
    }
    assert set(drawn) == set(classes)
    for name, (parent, standard) in drawn.items():
        cls = classes[name]
        library = [b.__name__ for b in cls.__bases__ if issubclass(b, MemphisError)]
        others = {b.__name__ for b in cls.__bases__ if not issubclass(b, MemphisError)}
        if parent is None:
            assert cls is MemphisError
            continue
        assert library == [parent], f"{name} is drawn under {parent}, its bases are {library}"
        assert others == standard, f"{name}: drawn with {standard}, defined with {others}"


def test_memphis_core_exports_every_error() -> None:
    for name in _errors.__all__:
        assert name in memphis_core.__all__
        assert getattr(memphis_core, name) is getattr(_errors, name)
