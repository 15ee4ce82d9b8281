"""Every cell of the connection table, h2 style, and the generated diagram in its docstring."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

import pytest

from memphis_core import LocalProtocolError
from memphis_core.nats import _state
from memphis_core.nats._state import TABLE, ConnState, Input, render_table, transition

E = TypeVar("E", bound=enum.Enum)


@pytest.mark.parametrize("state", list(ConnState), ids=lambda s: s.name)
@pytest.mark.parametrize("event", list(Input), ids=lambda i: i.name)
def test_every_cell(state: ConnState, event: Input) -> None:
    # A cell is either in the table (and lands in a real state) or refused with a typed error
    # that names both; nothing else can happen.
    if (state, event) in TABLE:
        assert isinstance(transition(state, event), ConnState)
    else:
        with pytest.raises(LocalProtocolError, match=f"{event.value}.*{state.value}"):
            transition(state, event)


def test_closed_is_terminal_except_for_close() -> None:
    assert [event for event in Input if (ConnState.CLOSED, event) in TABLE] == [Input.CLOSE]
    assert transition(ConnState.CLOSED, Input.CLOSE) is ConnState.CLOSED


def reachable(table: Mapping[tuple[E, enum.Enum], E], start: E) -> set[E]:
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


def test_every_state_can_close_and_every_state_is_reachable() -> None:
    assert all((state, Input.CLOSE) in TABLE for state in ConnState)
    assert reachable(TABLE, ConnState.IDLE) == set(ConnState)


def test_docstring_diagram_is_generated_from_the_table() -> None:
    # If this fails, paste the output of ``python -m memphis_core.nats._state`` into the
    # module docstring of memphis_core/nats/_state.py.
    assert _state.__doc__ is not None
    assert render_table() in _state.__doc__
    assert render_table().count("\n") + 1 == len(TABLE)
