"""Theory of operation: the life of one produce, as a state machine.

A produce is a JetStream publish with a reply subject; the session keeps its one record (the
encoded message, for the replay after a reconnect and the resend after a 503) and says whether it
is on the wire yet. What the Memphis layer decides is below, as data: ``_producers.Produce``
performs the side effects (finishing the operation, scheduling the resend, releasing the window
slot when a terminal state is reached) and moves only through :class:`ProduceMachine`, which
asks :func:`produce_transition` where to go. The table
is generated into this docstring by :func:`render_produce_table` (``python -m
memphis_core.memphis._produce_state`` prints it), and a test fails when the two differ::

    WAITING   pub_ack        ACKED
              no_responders  RETRYING
              failure        FAILED
    RETRYING  pub_ack        ACKED
              no_responders  RETRYING
              failure        FAILED

``no_responders`` is a 503 with time left in ``ack_wait``: the stream is electing a leader, and
the same record goes again after a backoff (docs/cluster-client.md, "Leader elections").
``failure`` is every final answer: an error PubAck, a timeout, the connection lost or closed,
``ack_wait`` spent on 503s, or a lookup that found the station's stream gone. ACKED and FAILED are
terminal: they have no row, so nothing can resurrect a finished produce.
"""

from __future__ import annotations

from typing import Final

from memphis_core.nats._state import TableEnum, render, step

from ._dispatch import ReplyHandler

__all__ = [
    "PRODUCE_DONE",
    "PRODUCE_TABLE",
    "ProduceInput",
    "ProduceMachine",
    "ProduceState",
    "produce_transition",
    "render_produce_table",
]


class ProduceState(TableEnum):
    WAITING = "waiting"  # queued or on the wire (the session's record knows which)
    RETRYING = "retrying"  # a 503 came back; the same record goes again after a backoff
    ACKED = "acked"  # the stream stored it (terminal)
    FAILED = "failed"  # a typed error says why (terminal)


class ProduceInput(TableEnum):
    PUB_ACK = "pub_ack"
    NO_RESPONDERS = "no_responders"
    FAILURE = "failure"


_S, _In = ProduceState, ProduceInput
PRODUCE_TABLE: Final[dict[tuple[ProduceState, ProduceInput], ProduceState]] = {
    (state, event): target
    for state in (_S.WAITING, _S.RETRYING)
    for event, target in (
        (_In.PUB_ACK, _S.ACKED),
        (_In.NO_RESPONDERS, _S.RETRYING),
        (_In.FAILURE, _S.FAILED),
    )
}
#: The states in which a produce is over: its window slot is free again.
PRODUCE_DONE: Final = frozenset({_S.ACKED, _S.FAILED})


def produce_transition(state: ProduceState, event: ProduceInput) -> ProduceState:
    """Return the state after ``event``; raise ``LocalProtocolError`` if the pair is not allowed."""
    return step(PRODUCE_TABLE, state, event, "the produce")


# A ReplyHandler itself (it adds no behaviour to it) so that ``Produce`` has a single base class:
# mypyc compiles no class with two (the optional compiled build, docs/compiled.md). The MRO of
# ``Produce`` is the same as with ``Produce(ProduceMachine, ReplyHandler)``.
class ProduceMachine(ReplyHandler):
    """The state of one produce. Only :meth:`advance` changes it, and only through the table:
    the class that performs a produce's side effects inherits this and never assigns ``state``."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = ProduceState.WAITING

    def advance(self, event: ProduceInput) -> ProduceState:
        """Take ``event``; return the new state (``LocalProtocolError`` if not allowed)."""
        state = self.state = produce_transition(self.state, event)
        return state


def render_produce_table() -> str:
    """The produce table as aligned text: one ``state  input  next`` row per cell."""
    return render(PRODUCE_TABLE, ProduceState, ProduceInput)


if __name__ == "__main__":
    print(render_produce_table())
