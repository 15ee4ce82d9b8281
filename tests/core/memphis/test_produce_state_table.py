"""Every cell of the produce table, and the generated diagram in its docstring."""

from __future__ import annotations

from memphis_core.memphis import _produce_state
from memphis_core.memphis._produce_state import (
    PRODUCE_DONE,
    PRODUCE_TABLE,
    ProduceInput,
    ProduceState,
    produce_transition,
    render_produce_table,
)
from tests.support.state_tables import (
    assert_diagram_generated,
    check_cell,
    every_cell,
    reachable,
)


@every_cell(ProduceState, ProduceInput)
def test_every_cell(state: ProduceState, event: ProduceInput) -> None:
    # A finished produce accepts nothing; a live one accepts every input.
    target = check_cell(PRODUCE_TABLE, produce_transition, state, event, "the produce")
    assert (target is None) == (state in PRODUCE_DONE)


def test_every_state_is_reachable_and_every_live_state_can_end() -> None:
    assert reachable(PRODUCE_TABLE, ProduceState.WAITING) == set(ProduceState)
    for state in set(ProduceState) - PRODUCE_DONE:
        assert produce_transition(state, ProduceInput.FAILURE) is ProduceState.FAILED
        assert produce_transition(state, ProduceInput.PUB_ACK) is ProduceState.ACKED


def test_docstring_diagram_is_generated_from_the_table() -> None:
    assert_diagram_generated(_produce_state, render_produce_table(), PRODUCE_TABLE)


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
