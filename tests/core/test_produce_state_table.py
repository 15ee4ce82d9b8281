"""Every cell of the produce table, and the generated diagram in its docstring."""

from __future__ import annotations

import pytest

from memphis_core import LocalProtocolError
from memphis_core.memphis import _produce_state
from memphis_core.memphis._produce_state import (
    PRODUCE_DONE,
    PRODUCE_TABLE,
    ProduceInput,
    ProduceState,
    produce_transition,
    render_produce_table,
)

from .test_state_table import reachable


@pytest.mark.parametrize("state", list(ProduceState), ids=lambda s: s.name)
@pytest.mark.parametrize("event", list(ProduceInput), ids=lambda i: i.name)
def test_every_cell(state: ProduceState, event: ProduceInput) -> None:
    # A cell is in the table (and lands in a real state) or refused with a typed error naming
    # both; a finished produce accepts nothing.
    if (state, event) in PRODUCE_TABLE:
        assert state not in PRODUCE_DONE
        assert isinstance(produce_transition(state, event), ProduceState)
    else:
        assert state in PRODUCE_DONE
        with pytest.raises(LocalProtocolError, match=f"{event.value}.*the produce.*{state.value}"):
            produce_transition(state, event)


def test_every_state_is_reachable_and_every_live_state_can_end() -> None:
    assert reachable(PRODUCE_TABLE, ProduceState.WAITING) == set(ProduceState)
    for state in set(ProduceState) - PRODUCE_DONE:
        assert produce_transition(state, ProduceInput.FAILURE) is ProduceState.FAILED
        assert produce_transition(state, ProduceInput.PUB_ACK) is ProduceState.ACKED


def test_docstring_diagram_is_generated_from_the_table() -> None:
    # If this fails, paste the output of ``python -m memphis_core.memphis._produce_state`` into
    # the module docstring of memphis_core/memphis/_produce_state.py.
    assert _produce_state.__doc__ is not None
    assert render_produce_table() in _produce_state.__doc__
    assert render_produce_table().count("\n") + 1 == len(PRODUCE_TABLE)


def test_nothing_outside_the_table_module_sets_a_produces_state() -> None:
    # The produce handler moves only through ``ProduceMachine.advance``: no module of the core
    # but ``_produce_state.py`` assigns a ``state`` attribute that is a produce's.
    import ast
    from pathlib import Path

    from memphis_core.memphis._producers import Produce

    assert issubclass(Produce, _produce_state.ProduceMachine)
    source = Path(_produce_state.__file__).with_name("_producers.py").read_text()
    assigned = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        for part in ast.walk(target)
        if isinstance(part, ast.Attribute) and part.attr == "state"
    ]
    assert assigned == []
