"""Theory of operation: the connection state machine of the NATS session.

Everything that decides *which state comes next* lives in this one file, as data (h11's rule 1).
``_session.py`` performs the side effects (queueing CONNECT, replaying subscriptions, failing
requests) and asks :func:`transition` where to go. A pair missing from the table raises
``LocalProtocolError``: only the frontend can cause one (``connection_made`` twice, say), because
the session never feeds server input it has not checked against the current state.

One logical connection survives many transports. The table below is generated from ``TABLE``
by :func:`render_table` (``python -m memphis_core.nats._state`` prints it), and a test fails when
the two differ, so it cannot go stale. Each row is ``state  input  next state``::

    IDLE           connection_made  AWAITING_INFO
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    AWAITING_INFO  info             AWAITING_PONG
                   info_tls         AWAITING_TLS
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    AWAITING_TLS   tls_done         AWAITING_PONG
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    AWAITING_PONG  pong             CONNECTED
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    CONNECTED      info             CONNECTED
                   pong             CONNECTED
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    DISCONNECTED   reconnect_timer  RECONNECT_DUE
                   give_up          CLOSED
                   close            CLOSED
    RECONNECT_DUE  connection_made  AWAITING_INFO
                   lost             DISCONNECTED
                   give_up          CLOSED
                   close            CLOSED
    CLOSED         close            CLOSED

NATS protocol facts behind it (docs.nats.io, "Client Protocol"): the server speaks first with
INFO; the client answers CONNECT and may pipeline commands before PONG, and a PING right after
CONNECT makes the PONG double as "CONNECT accepted" (an auth failure arrives as -ERR instead).
With TLS the INFO is in the clear and the upgrade happens before CONNECT. Reconnect policy
(docs/protocol.md, "Connection"): a fixed ``reconnect_interval`` between attempts
on one server, at most ``max_reconnect`` consecutive failed attempts, no retry once every given
server refused the very first connect; which server comes next is the pool's business
(``_pool.py``, docs/cluster-client.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, TypeVar

from ._errors import LocalProtocolError

__all__ = [
    "CONNECT_SENT",
    "READING_STATES",
    "TABLE",
    "TRANSPORT_STATES",
    "ConnState",
    "Input",
    "render",
    "render_table",
    "step",
    "transition",
]

StateT = TypeVar("StateT", bound=enum.Enum)
InputT = TypeVar("InputT", bound=enum.Enum)


class TableEnum(enum.Enum):
    """The states and inputs of a transition table: members hash by identity.

    ``enum.Enum.__hash__`` is a Python-level ``hash(self._name_)``; every transition looks up a
    ``(state, input)`` pair, once per PubAck and per pulled message, so the hash runs on the
    hot path. Members are singletons compared by identity, so the identity hash is equivalent.
    """

    __hash__ = object.__hash__


class ConnState(TableEnum):
    IDLE = "idle"  # created, no transport yet
    AWAITING_INFO = "awaiting_info"  # transport open, server has not spoken
    AWAITING_TLS = "awaiting_tls"  # INFO seen, the frontend is upgrading to TLS
    AWAITING_PONG = "awaiting_pong"  # CONNECT + PING sent
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # transport gone, waiting for the backoff deadline
    RECONNECT_DUE = "reconnect_due"  # deadline passed, the frontend should dial again
    CLOSED = "closed"  # terminal


class Input(TableEnum):
    CONNECTION_MADE = "connection_made"
    INFO = "info"
    INFO_TLS = "info_tls"  # INFO received and TLS must be negotiated first
    TLS_DONE = "tls_done"
    PONG = "pong"
    LOST = "lost"  # EOF, transport error, -ERR, protocol error, handshake timeout, stale
    RECONNECT_TIMER = "reconnect_timer"
    GIVE_UP = "give_up"  # reconnects disabled or exhausted
    CLOSE = "close"  # user asked


S, In = ConnState, Input

# (state, input) -> next state. INFO/PONG in CONNECTED are legal (INFO updates, keepalive PONGs)
# and keep the state; the session handles their content.
_TABLE: Final[dict[tuple[ConnState, Input], ConnState]] = {
    (S.IDLE, In.CONNECTION_MADE): S.AWAITING_INFO,
    # INFO goes straight to AWAITING_PONG because CONNECT and the handshake PING are queued in the
    # same step (``_send_connect``); there is no separate "CONNECT sent" state to wait in.
    (S.AWAITING_INFO, In.INFO): S.AWAITING_PONG,
    (S.AWAITING_INFO, In.INFO_TLS): S.AWAITING_TLS,
    (S.AWAITING_TLS, In.TLS_DONE): S.AWAITING_PONG,
    (S.AWAITING_PONG, In.PONG): S.CONNECTED,
    (S.CONNECTED, In.INFO): S.CONNECTED,
    (S.CONNECTED, In.PONG): S.CONNECTED,
    (S.DISCONNECTED, In.RECONNECT_TIMER): S.RECONNECT_DUE,
    (S.RECONNECT_DUE, In.CONNECTION_MADE): S.AWAITING_INFO,
}
# IDLE + LOST: the first dial failed and the pool has another given server to try.
_TABLE[(S.IDLE, In.LOST)] = S.DISCONNECTED
for _state in (S.AWAITING_INFO, S.AWAITING_TLS, S.AWAITING_PONG, S.CONNECTED, S.RECONNECT_DUE):
    # RECONNECT_DUE + LOST: the frontend could not even dial; count it as a failed attempt.
    _TABLE[(_state, In.LOST)] = S.DISCONNECTED
for _state in (
    S.DISCONNECTED,
    S.RECONNECT_DUE,
    S.IDLE,
    S.AWAITING_INFO,
    S.AWAITING_TLS,
    S.AWAITING_PONG,
    S.CONNECTED,
):
    _TABLE[(_state, In.GIVE_UP)] = S.CLOSED
    _TABLE[(_state, In.CLOSE)] = S.CLOSED
# CLOSED has no LOST or GIVE_UP row on purpose: a late transport error reported after close() must
# raise here rather than resurrect a finished session.
_TABLE[(S.CLOSED, In.CLOSE)] = S.CLOSED  # close() is idempotent
del _state

TABLE: Final = _TABLE


# Which states have a transport (a disconnect must be reported), read bytes from it, or have
# already queued this transport's CONNECT.
TRANSPORT_STATES: Final = frozenset(
    {
        S.AWAITING_INFO,
        S.AWAITING_TLS,
        S.AWAITING_PONG,
        S.CONNECTED,
        S.RECONNECT_DUE,
    }
)
# SUB/UNSUB may follow a CONNECT that is already queued: the server handles them in order, and
# ``_send_connect`` only replays what existed when it ran.
CONNECT_SENT: Final = frozenset({S.AWAITING_PONG, S.CONNECTED})
# AWAITING_TLS is not a reading state: the bytes on the socket are then the TLS handshake, which
# belongs to the frontend's TLS layer; handing them to the NATS parser would poison it.
# RECONNECT_DUE is not one either: the old transport is gone and the new one is not made yet.
READING_STATES: Final = frozenset({S.AWAITING_INFO, S.AWAITING_PONG, S.CONNECTED})


def transition(state: ConnState, event: Input) -> ConnState:
    """Return the state after ``event`` in ``state``; raise if the pair is not allowed."""
    return step(TABLE, state, event, "the connection")


def step(
    table: Mapping[tuple[StateT, InputT], StateT], state: StateT, event: InputT, what: str
) -> StateT:
    """One transition of any table of this shape; raise ``LocalProtocolError`` naming ``what``
    when the pair is not in it."""
    try:
        return table[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"cannot handle {event.value} while {what} is {state.value}"
        ) from None


def render_table() -> str:
    """The transition table as aligned text: one ``state  input  next`` row per cell."""
    return render(TABLE, ConnState, Input)


def render(
    table: Mapping[tuple[StateT, InputT], StateT], states: type[StateT], inputs: type[InputT]
) -> str:
    """Any transition table as aligned text: one ``state  input  next`` row per cell.

    Rows follow the declaration order of ``states`` and ``inputs``; the state is written only on
    its first row.
    """
    rows: list[str] = []
    width = max(len(state.name) for state in states) + 2
    input_width = max(len(event.value) for event in inputs) + 2
    for state in states:
        first = True
        for event in inputs:
            target = table.get((state, event))
            if target is None:
                continue
            label = state.name if first else ""
            rows.append(f"    {label:<{width}}{event.value:<{input_width}}{target.name}")
            first = False
    return "\n".join(rows)


if __name__ == "__main__":
    print(render_table())
