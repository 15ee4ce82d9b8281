"""InFlight, the session's requests by token and their deadlines, against a plain model.

The heap with lazily skipped entries must answer exactly as "the live requests, sorted by
deadline" would, whatever the order of adds, answers and expiries, or a clock that goes back.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_core.nats._inflight import InFlight, PendingRequest

_TIMEOUTS = st.sampled_from([0.5, 1.0, 2.0, 15.0, 30.0, 0.25, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _TIMEOUTS),
        st.tuples(st.just("answer"), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.floats(-2.0, 5.0)),  # a clock may also go back
        st.tuples(st.just("expire"), st.floats(0.0, 5.0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(_STEPS)
def test_inflight_answers_as_a_sorted_list_of_live_requests(steps: list[tuple[str, float]]) -> None:
    inflight = InFlight()
    live: dict[int, float] = {}  # the model: token -> deadline
    now = 100.0
    token = 0
    for op, arg in steps:
        if op == "add":
            token += 1
            inflight.add(PendingRequest(token, b"", now + arg, False, True))
            live[token] = now + arg
        elif op == "answer" and live:
            tokens = sorted(live)
            gone = tokens[int(arg) % len(tokens)]
            assert inflight.pop(gone) is not None
            del live[gone]
        elif op == "tick":
            now += arg
        elif op == "expire":
            now += arg
            expired = inflight.expire(now)
            due = sorted((d, t) for t, d in live.items() if d <= now)
            assert [(r.deadline, r.token) for r in expired] == due
            for _, t in due:
                del live[t]
        assert len(inflight) == len(live)
        assert inflight.earliest() == (min(live.values()) if live else None)
    assert [r.token for r in inflight] == sorted(live)


def test_memory_follows_the_requests_in_flight_not_those_ever_sent() -> None:
    # An async-produce stream: a window of 100 in flight, 100,000 sent and answered in order,
    # with one old request left unanswered at the top of the heap all along.
    inflight = InFlight()
    inflight.add(PendingRequest(0, b"", 15.0, False, True))
    now = 0.0
    for token in range(1, 100_001):
        now += 0.0001
        inflight.add(PendingRequest(token, b"", now + 15.0, False, True))
        if token > 100:
            inflight.pop(token - 100)
        if token % 1000 == 0:
            assert inflight.earliest() == 15.0
    assert len(inflight) == 101
    assert len(inflight._heap) <= 2 * 101 + 64 + 1
