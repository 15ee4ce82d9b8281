"""create_station on an existing station: the options its streams show that differ from those
asked (memphis_core/memphis/_existing.py, docs/protocol.md §5.3, §5.5)."""

from __future__ import annotations

import json

import pytest

from memphis_core import ConnectionClosedError, ServerError, station_options
from memphis_core.memphis._existing import station_differences
from memphis_core.memphis._introspection import StreamSettings, stream_settings
from tests.support.scripted_broker import Script

MISSING = json.dumps({"error": {"code": 404, "err_code": 10059, "description": "not found"}})


def stream(**config: object) -> bytes:
    base: dict[str, object] = {
        "retention": "limits",
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 3600 * 10**9,
        "storage": "file",
        "num_replicas": 1,
        "duplicate_window": 120 * 10**9,
    }
    base.update(config)
    return json.dumps({"config": base, "state": {"messages": 0}}).encode()


def test_a_new_station_has_no_differences() -> None:
    opts = station_options("s", partitions_number=3)
    assert station_differences(opts, MISSING.encode(), MISSING.encode(), MISSING.encode()) == ()
    assert station_differences(opts, None) == ()  # no reply at all: no check
    assert station_differences(opts, b"not json") == ()


def test_the_same_options_as_the_broker_normalises_them_are_not_differences() -> None:
    # The broker turns 2 replicas into 3, a 0 retention into an hour of age, a 50 ms window
    # into 100 ms (docs/protocol.md §5.4): asking the same again is not a difference.
    opts = station_options("s", replicas=2, retention_value=0, idempotency_window=0.1)
    has = stream(num_replicas=3, duplicate_window=10**8)
    assert station_differences(opts, has, None, MISSING.encode()) == ()


def test_each_differing_option_is_named() -> None:
    opts = station_options("s", retention_type="ack_based", storage_type="memory", replicas=3)
    assert station_differences(opts, stream(max_msgs=7), None, MISSING.encode()) == (
        "retention_type: asked 'ack_based', the station has 'messages'",
        "retention_value: asked None, the station has 7",
        "storage_type: asked 'memory', the station has 'file'",
        "replicas: asked 3, the station has 1",
    )


def test_a_stream_is_read_as_station_info_reads_it() -> None:
    # One parser of a stream config (station introspection's): a count limit wins over an age.
    config = json.loads(stream(max_msgs=7))["config"]
    assert stream_settings(config) == StreamSettings("messages", 7, "file", 1, 120.0)
    opts = station_options("s", retention_type="messages", retention_value=7)
    assert station_differences(opts, stream(max_msgs=7), None, MISSING.encode()) == ()


def test_partitions_fewer_or_more() -> None:
    three = station_options("s", partitions_number=3)
    assert station_differences(three, stream(), MISSING.encode(), MISSING.encode()) == (
        "partitions_number: asked 3, the station has fewer",
    )
    assert station_differences(three, stream(), stream(), stream()) == (
        "partitions_number: asked 3, the station has more",
    )
    assert station_differences(three, stream(), stream(), MISSING.encode()) == ()


def test_create_station_reads_the_streams_first_and_returns_the_differences() -> None:
    script = Script()
    script.connect()
    op = script.client.create_station(station_options("orders", partitions_number=2), 0.0)
    lookups = {s.subject: s for s in script.take()}
    assert set(lookups) == {f"$JS.API.STREAM.INFO.orders${p}" for p in (1, 2, 3)}
    script.reply(lookups["$JS.API.STREAM.INFO.orders$1"], stream(storage="memory"))
    script.reply(lookups["$JS.API.STREAM.INFO.orders$2"], MISSING)
    assert not script.take()  # the creation waits for the last lookup
    script.reply(lookups["$JS.API.STREAM.INFO.orders$3"], MISSING)
    script.reply(script.one("PUB", "$memphis_station_creations"), b"")
    assert op.outcome() == (
        "storage_type: asked 'file', the station has 'memory'",
        "partitions_number: asked 2, the station has fewer",
    )


def test_a_lookup_without_reply_does_not_hold_the_creation_back() -> None:
    script = Script()
    script.connect()
    op = script.client.create_station(station_options("orders"), 0.0)
    script.take()
    script.advance(5.0)  # LOOKUP_TIMEOUT: created without the check
    script.reply(script.one("PUB", "$memphis_station_creations"), b"")
    assert op.outcome() == ()


def test_a_refused_lookup_does_not_hold_the_creation_back() -> None:
    # An application user may lack the JetStream API permission: nats-server answers the
    # STREAM.INFO publishes with a non-fatal -ERR and never replies. The creation goes on at
    # once (the check is best-effort), not after a timeout.
    script = Script()
    script.connect()
    op = script.client.create_station(station_options("orders", partitions_number=2), 0.0)
    for lookup in script.take():
        text = f'Permissions Violation for Publish to "{lookup.subject}"'
        script.feed(f"-ERR '{text}'\r\n".encode())
    script.reply(script.one("PUB", "$memphis_station_creations"), b"")
    assert op.outcome() == ()
    # The lookups are the client's own, optional: their refusal is no server error of the
    # user's (no on_error call, no warning per create_station).
    assert not [e for e in script.events() if isinstance(e, ServerError)]


def test_a_lookup_gives_up_within_a_second() -> None:
    # No reply at all (a JetStream without a meta leader): best-effort, so not seconds of wait.
    script = Script()
    script.connect()
    script.client.create_station(station_options("orders"), 0.0)
    script.take()
    script.advance(1.0)
    assert script.one("PUB", "$memphis_station_creations")


def test_closing_during_the_lookups_fails_the_creation() -> None:
    # The lookups end with the close; the creation they were holding back cannot be sent any
    # more: the operation fails with ConnectionClosedError (nothing raises out of close()).
    script = Script()
    script.connect()
    op = script.client.create_station(station_options("orders"), 0.0)
    script.take()
    script.client.close()
    script.events()
    with pytest.raises(ConnectionClosedError):
        op.outcome()
