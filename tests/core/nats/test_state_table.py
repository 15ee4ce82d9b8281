"""Every cell of the connection table, h2 style, and the generated diagram in its docstring."""

from __future__ import annotations

from memphis_core.nats import _state
from memphis_core.nats._state import TABLE, ConnState, Input, render_table, transition
from tests.support.state_tables import (
    assert_diagram_generated,
    check_cell,
    every_cell,
    reachable,
)


@every_cell(ConnState, Input)
def test_every_cell(state: ConnState, event: Input) -> None:
    check_cell(TABLE, transition, state, event, "the connection")


def test_closed_is_terminal_except_for_close() -> None:
    assert [event for event in Input if (ConnState.CLOSED, event) in TABLE] == [Input.CLOSE]
    assert transition(ConnState.CLOSED, Input.CLOSE) is ConnState.CLOSED


def test_every_state_can_close_and_every_state_is_reachable() -> None:
    assert all((state, Input.CLOSE) in TABLE for state in ConnState)
    assert reachable(TABLE, ConnState.IDLE) == set(ConnState)


def test_docstring_diagram_is_generated_from_the_table() -> None:
    assert_diagram_generated(_state, render_table(), TABLE)
