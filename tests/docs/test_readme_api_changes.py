"""The README's API-changes section is true: the names ``memphis_core`` no longer exports are
importable where the table says, and the figures match ``memphis_core.__all__``."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import memphis_core
from memphis_core.memphis import _errors

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| no longer exported by `memphis_core` | import it from |"


def moved_names() -> dict[str, str]:
    """Each name of the table, with the module the table says to import it from."""
    text = README.read_text("utf-8")
    rows = text.split(HEADER, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    moved: dict[str, str] = {}
    for row in rows:
        names, module = (cell.strip() for cell in row.strip("|").split("|"))
        for name in re.findall(r"`(\w+)`", names):
            moved[name] = module.strip("`")
    return moved


def test_moved_names_are_importable_where_the_table_says() -> None:
    moved = moved_names()
    assert moved
    for name, module in moved.items():
        assert name not in memphis_core.__all__, name
        assert hasattr(importlib.import_module(module), name), f"{name} is not in {module}"


def test_the_figures_are_current() -> None:
    text = " ".join(README.read_text("utf-8").split())
    match = re.search(r"(\d+) names, (\d+) of them errors; .*? The (\d+) others", text)
    assert match, "the API-changes section no longer gives the figures"
    total, errors, others = (int(group) for group in match.groups())
    assert total == len(memphis_core.__all__)
    assert errors == len(_errors.__all__)
    assert others == len(moved_names())
