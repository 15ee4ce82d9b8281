"""What a received message shows beyond its data: the idempotency key and the JetStream metadata
of its ack subject, ``in_progress()`` (docs/protocol.md §7.14), and user headers without the
SDK's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.probe import BrokerProbe


def test_msg_id_and_ack_subject_metadata(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    before = time.time()
    producer.produce(b"a", msg_id="order-1")
    producer.produce(b"b")
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=1.0)
    first, second = consumer.fetch(batch_size=2)
    assert (first.msg_id, second.msg_id) == ("order-1", None)
    assert "msg-id" not in first.headers
    assert (first.sequence_number, first.consumer_sequence, first.delivery_count) == (1, 1, 1)
    assert (first.pending, second.pending) == (1, 0)
    assert first.timestamp is not None
    assert before - 5 < first.timestamp < time.time() + 5
    first.ack()
    second.ack()


def test_in_progress_keeps_a_message_from_being_redelivered(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # max_ack_time 2 s: without the +WPI sent after 1.2 s the broker would redeliver at 2 s. The
    # time passes in fetches that find nothing, as an application's would.
    station = name("st")
    conn.create_producer(station, "p").produce(b"slow")
    consumer = conn.create_consumer(station, "c", max_ack_time=2, batch_max_wait_time=5.0)
    (message,) = consumer.fetch(batch_size=1)
    started = time.monotonic()
    assert consumer.fetch(batch_size=1, timeout=1.2) == []
    message.in_progress()
    assert consumer.fetch(batch_size=1, timeout=1.3) == [], "redelivered despite +WPI"
    assert time.monotonic() - started > 2.2  # past the first ack timer
    assert probe.ack_pending(station, "c") == 1
    message.ack()


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_user_headers_exclude_the_sdks_own(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: consumers saw msg-id among the user headers.
    station = name("st")
    producer = conn.create_producer(station, "p")
    producer.produce(b"x", headers={"trace": "t-1"}, msg_id="m-1")
    (message,) = conn.create_consumer(station, "c", batch_max_wait_time=0.5).fetch()
    assert message.headers == {"trace": "t-1"}
    for key in ("msg-id", "Nats-Msg-Id", "$memphis_producedBy"):
        with pytest.raises(memphis.MemphisHeaderError):
            producer.produce(b"x", headers={key: "v"})
