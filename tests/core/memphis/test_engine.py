"""The engine policy every frontend shares (``memphis_core/memphis/_engine.py``): the event →
action table, the lifecycle's transition table cell by cell, and the start, shutdown and crash
decisions, bytes in and events out."""

from __future__ import annotations

import typing

import pytest

from memphis_core import (
    Client,
    ClientEvent,
    Closed,
    CloseIncompleteError,
    Connected,
    ConnectionClosedError,
    ConsumerError,
    Disconnected,
    Lifecycle,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    ReconnectDue,
    ServerError,
    TLSUpgradeRequired,
    connect_options,
    produce_options,
    react,
)
from memphis_core.memphis._engine import (
    ACTIONS,
    START_SLACK,
    TRANSITIONS,
    Phase,
    Step,
    transition,
)
from tests.support.compiled import pure_only
from tests.support.scripted_broker import Script, connected, consumer, producer
from tests.support.state_tables import check_cell, every_cell, reachable


class Recorder:
    """An engine whose actions only say they were called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def drop_transport(self) -> str:
        self.calls.append(("drop_transport", None))
        return "dropped"

    def dial(self) -> str:
        self.calls.append(("dial", None))
        return "dialled"

    def upgrade_tls(self) -> str:
        self.calls.append(("upgrade_tls", None))
        return "upgraded"

    def finish(self, error: MemphisError | None) -> str:
        self.calls.append(("finish", error))
        return "finished"

    def consumer_error(self, event: ConsumerError) -> str:
        self.calls.append(("consumer_error", event))
        return "handed over"


def _event_types(union: object) -> set[type]:
    found: set[type] = set()
    for arg in typing.get_args(union):
        found |= _event_types(arg) if typing.get_args(arg) else {arg}
    return found


def test_every_client_event_has_a_row_in_the_action_table() -> None:
    # A new event type must be decided here, once, not in one engine only.
    assert set(ACTIONS) == _event_types(ClientEvent)


def test_react_calls_the_action_each_event_asks_for_and_returns_its_result() -> None:
    engine = Recorder()
    error = MemphisError("gone")
    assert react(Disconnected(error, None), engine) == "dropped"
    assert react(ReconnectDue(2), engine) == "dialled"
    assert react(TLSUpgradeRequired({}), engine) == "upgraded"
    assert react(Closed(error), engine) == "finished"
    assert engine.calls == [
        ("drop_transport", None),
        ("dial", None),
        ("upgrade_tls", None),
        ("finish", error),
    ]


def test_a_consumer_error_is_handed_to_the_engine() -> None:
    script = connected()
    state = consumer(script)
    event = ConsumerError(state, MemphisError("station unreachable"))
    engine = Recorder()
    assert react(event, engine) == "handed over"
    assert engine.calls == [("consumer_error", event)]


def test_events_that_ask_nothing_call_nothing() -> None:
    engine = Recorder()
    assert react(Connected({}, reconnected=False), engine) is None
    assert react(ServerError("slow consumer"), engine) is None
    assert engine.calls == []


@pure_only
def test_react_refuses_what_is_not_a_client_event() -> None:
    with pytest.raises(LocalProtocolError, match="not a client event"):
        react("Closed", Recorder())  # type: ignore[arg-type]


@every_cell(Phase, Step)
def test_every_cell(state: Phase, event: Step) -> None:
    check_cell(TRANSITIONS, transition, state, event, "the engine lifecycle")


def test_closed_is_terminal_and_every_phase_is_reachable() -> None:
    assert {target for (source, _), target in TRANSITIONS.items() if source is Phase.CLOSED} == {
        Phase.CLOSED
    }
    assert all((phase, Step.CLOSED) in TRANSITIONS for phase in Phase)
    assert all((phase, Step.CRASHED) in TRANSITIONS for phase in Phase)
    assert reachable(TRANSITIONS, Phase.STARTING) == set(Phase)


def test_the_start_deadline_allows_a_whole_timeout_per_server() -> None:
    client = Client(connect_options("a:1,b:2,c:3", "root", connection_token="t", timeout=4.0))
    assert Lifecycle(client).start_deadline(100.0) == 100.0 + 3 * 4.0 + START_SLACK


def test_a_start_that_connected_opens_and_one_that_did_not_says_why() -> None:
    script = connected()
    life = Lifecycle(script.client)
    assert life.start_failure() is None
    assert life.phase is Phase.OPEN

    timed_out = Lifecycle(Script().client)
    failure = timed_out.start_failure()
    assert isinstance(failure, MemphisConnectError)
    assert "timed out" in str(failure)

    refused = Lifecycle(Script().client)
    refused.closed_by(MemphisError("Authorization Violation"))
    failure = refused.start_failure()
    # Always a MemphisConnectError, with the cause's text.
    assert isinstance(failure, MemphisConnectError)
    assert "Authorization Violation" in str(failure)


def test_shutdown_drains_then_the_drain_outcome_decides_what_close_raises() -> None:
    script = connected()
    life = Lifecycle(script.client)
    life.start_failure()
    prod = producer(script)
    script.client.produce(prod, b"x", produce_options(async_produce=True), script.now)
    op = life.shutdown(script.now, 1.0)
    assert op is not None
    assert not op.done
    assert life.phase is Phase.DRAINING
    script.advance(2.0)  # no PubAck in time
    assert op.done
    assert isinstance(op.error, CloseIncompleteError)
    assert life.drain_failure(op.error) is op.error
    # A drain cut short by a close already failed what it held: nothing more to raise.
    assert life.drain_failure(ConnectionClosedError("closed")) is None


def test_shutdown_of_a_closed_connection_drains_nothing() -> None:
    script = connected()
    life = Lifecycle(script.client)
    life.start_failure()
    life.closed_by(None)
    assert life.shutdown(script.now, 1.0) is None
    assert life.closed


def test_a_crash_closes_the_client_with_an_error_naming_it_once() -> None:
    script = connected()
    life = Lifecycle(script.client)
    life.start_failure()
    waiting = script.client.ping()
    closed = life.crash(ValueError("bug"))
    # The core's Closed event, for the engine to dispatch (on_closed(error), then finish).
    assert isinstance(closed, Closed)
    error = closed.error
    assert error is not None
    assert "memphis: internal error: ValueError('bug')" in str(error)
    assert life.closed
    assert life.error is error
    # The core finished its own operation, naming the cause: no engine has to.
    assert waiting.done
    assert waiting.error is not None
    assert waiting.error.__cause__ is error
    assert life.crash(ValueError("later")) is None
    assert life.error is error


@pure_only
def test_a_crash_whose_close_breaks_still_gives_a_closed_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # If the core is what broke, its close may break too: the engine must still announce
    # the close (on_closed) and release its waiters, with the crash as the error.
    script = connected()
    life = Lifecycle(script.client)
    life.start_failure()

    def broken(error: MemphisError | None = None) -> None:
        raise IndexError("close broke")

    monkeypatch.setattr(script.client, "close", broken)
    closed = life.crash(ValueError("bug"))
    assert isinstance(closed, Closed)
    assert closed.error is life.error
    assert "ValueError('bug')" in str(closed.error)
    assert life.closed


def test_a_crash_after_the_core_closed_leaves_its_closed_event_to_whoever_took_it() -> None:
    # The core's Closed was taken (and is being dispatched) before the engine crashed:
    # dispatching another would call on_closed twice.
    script = connected()
    life = Lifecycle(script.client)
    life.start_failure()
    script.client.close(MemphisError("server gone"))
    assert any(isinstance(e, Closed) for e in script.client.events())
    assert life.crash(ValueError("bug")) is None
    assert life.closed


def test_the_first_close_reason_is_kept() -> None:
    life = Lifecycle(connected().client)
    first = MemphisError("server gone")
    life.closed_by(first)
    life.closed_by(None)  # the engine's own close afterwards
    assert life.error is first
