"""Checks every state machine's test runs on its transition table (h2 style).

A table maps ``(state, input)`` to the next state. :func:`every_cell` parametrizes a test over all
pairs, :func:`check_cell` asserts what one pair does, :func:`reachable` walks the table, and
:func:`assert_diagram_generated` keeps the module docstring's diagram in step with the table.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

from memphis_core import LocalProtocolError

StateT = TypeVar("StateT", bound=enum.Enum)
InputT = TypeVar("InputT", bound=enum.Enum)


def every_cell(states: type[enum.Enum], inputs: type[enum.Enum]) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize`` over every ``(state, event)`` pair, named ``STATE-INPUT``."""
    return pytest.mark.parametrize(
        ("state", "event"),
        [pytest.param(s, e, id=f"{s.name}-{e.name}") for s in states for e in inputs],
    )


def check_cell(
    table: Mapping[tuple[StateT, InputT], StateT],
    transition: Callable[[StateT, InputT], StateT],
    state: StateT,
    event: InputT,
    what: str,
) -> StateT | None:
    """A pair is either in ``table`` (``transition`` lands where the table says) or refused with
    a ``LocalProtocolError`` naming the input, ``what`` (the machine) and the state; nothing else
    can happen. Return the next state, or None for a refused pair."""
    if (state, event) in table:
        target = transition(state, event)
        assert target is table[(state, event)]
        return target
    with pytest.raises(LocalProtocolError, match=f"{event.value}.*{what}.*{state.value}"):
        transition(state, event)
    return None


def reachable(table: Mapping[tuple[StateT, InputT], StateT], start: StateT) -> set[StateT]:
    """Every state a walk of ``table`` can reach from ``start`` (``start`` included)."""
    reached = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for (source, _), target in table.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    return reached


def assert_diagram_generated(
    module: ModuleType, rendered: str, table: Mapping[tuple[StateT, InputT], StateT]
) -> None:
    """``module``'s docstring holds ``rendered`` (the table's diagram), one row per cell.

    When this fails, paste the output of ``python -m <module>`` into the module docstring.
    """
    doc = module.__doc__
    if doc is None and module.__file__ is not None and not module.__file__.endswith(".py"):
        # A mypyc-compiled module keeps no docstring (docs/compiled.md): read its source's.
        source = Path(module.__file__).with_name(module.__name__.rpartition(".")[2] + ".py")
        doc = ast.get_docstring(ast.parse(source.read_text()), clean=False)
    assert doc is not None
    assert rendered in doc, f"regenerate with: python -m {module.__name__}"
    assert rendered.count("\n") + 1 == len(table)
