"""Dead-letter flows: explicit dead_letter, poison by max_msg_deliveries, dls_station forwarding,
and the operator's resend back to the consumer group (acked via ``$memphis_pm_acks``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.names import SCHEMAS
from tests.support.probe import BrokerProbe
from tests.support.waits import wait_until

WAIT = 0.3


def _poison(
    conn: Any, station: str, group: str, deliveries: int = 2
) -> tuple[Any, list[Any]]:
    """Let one message exhaust ``deliveries`` without an ack.

    Returns the consumer and every delivery seen. JetStream notices the exhausted message (and
    emits the MAX_DELIVERIES advisory the broker turns into a DLS row) when it would redeliver
    it, so callers keep pulling with :func:`_pull_until` while they wait for the row.
    """
    consumer = conn.create_consumer(
        station,
        group,
        max_msg_deliveries=deliveries,
        max_ack_time=0.3,
        batch_max_wait_time=WAIT,
    )
    seen: list[Any] = []

    def delivered_enough() -> bool:
        seen.extend(consumer.fetch())
        return len(seen) >= deliveries

    wait_until(delivered_enough, timeout=15, what=f"{deliveries} deliveries")
    return consumer, seen


def _pull_until(
    consumers: list[Any], predicate: Callable[[], Any], what: str, timeout: float = 20
) -> Any:
    """Keep the consumers pulling (nothing more may arrive) until ``predicate`` holds."""

    def check() -> Any:
        for consumer in consumers:
            assert consumer.fetch() == [], "a poisoned message was delivered again"
        return predicate()

    return wait_until(check, timeout=timeout, what=what)


def test_dead_letter_terminates_and_records_the_reason(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p").produce(b"cannot process", headers={"k": "v"})
    consumer = conn.create_consumer(
        station, "c", batch_max_wait_time=WAIT, max_ack_time=0.5
    )
    (msg,) = consumer.fetch()
    msg.dead_letter("bad payload")
    rows = wait_until(lambda: probe.dls_rows(station), what="a DLS row")
    (row,) = rows
    assert row["message_type"] == "poison"
    assert row["validation_error"] == "bad payload"
    assert row["poisoned_cgs"] == ["c"]
    assert row["message_seq"] == msg.sequence_number
    assert row["partition_number"] == 1
    assert bytes.fromhex(row["message_details"]["data"]) == b"cannot process"
    assert row["message_details"]["headers"]["k"] == "v"
    # Terminated, not just unacked: it never comes back, even after max_ack_time (0.5 s).
    later = conn.create_consumer(station, "c", batch_max_wait_time=1.0, max_ack_time=0.5)
    assert later.fetch() == []


def test_dead_letter_on_a_partitioned_station(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    st = conn.create_station(station, partitions_number=3)
    st.create_producer("p").produce(b"p3", partition_number=3)
    consumer = st.create_consumer("c", batch_max_wait_time=WAIT)
    (msg,) = consumer.fetch(partition_number=3)
    msg.dead_letter("nope")
    (row,) = wait_until(lambda: probe.dls_rows(station), what="a DLS row")
    assert row["partition_number"] == 3
    assert bytes.fromhex(row["message_details"]["data"]) == b"p3"


def test_max_msg_deliveries_sends_the_message_to_the_dls(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p").produce(b"poison")
    consumer, seen = _poison(conn, station, "c", deliveries=2)
    assert [m.data for m in seen] == [b"poison", b"poison"]
    assert len({m.sequence_number for m in seen}) == 1
    # _pull_until also checks there is no third delivery.
    (row,) = _pull_until([consumer], lambda: probe.dls_rows(station), what="a poison row")
    assert row["message_type"] == "poison"
    assert row["poisoned_cgs"] == ["c"]
    assert row["producer_name"] == "p"
    assert row["message_seq"] == seen[0].sequence_number
    assert bytes.fromhex(row["message_details"]["data"]) == b"poison"


def test_dls_station_receives_dead_letters_and_poison(
    conn: Any, name: Callable[[str], str]
) -> None:
    station, dls = name("st"), name("dls")
    conn.create_station(dls)
    conn.create_station(station, dls_station=dls)
    producer = conn.create_producer(station, "p")
    producer.produce(b"explicit", headers={"origin": "test"})
    producer.produce(b"poison")
    consumer = conn.create_consumer(
        station, "c", max_msg_deliveries=1, max_ack_time=0.3, batch_max_wait_time=WAIT
    )
    first, second = consumer.fetch(batch_size=2)
    first.dead_letter("explicit reason")  # second is never acked: poison after 1 delivery
    assert second.data == b"poison"
    watcher = conn.create_consumer(dls, "watch", batch_max_wait_time=WAIT)
    got: list[Any] = []

    def both() -> bool:
        batch = watcher.fetch()
        for m in batch:
            m.ack()
        got.extend(batch)
        return len(got) >= 2

    _pull_until([consumer], both, what="two messages in the dls_station")
    by_data = {bytes(m.data): m for m in got}
    assert set(by_data) == {b"explicit", b"poison"}
    for m in got:
        assert m.headers["station"] == station
        assert m.headers["type"] == "unacked"
    assert by_data[b"explicit"].headers["origin"] == "test"


def test_schema_failures_are_forwarded_to_the_dls_station(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema, station, dls = name("schema"), name("st"), name("dls")
    conn.create_schema(schema, memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
    conn.create_station(dls)
    conn.create_station(station, dls_station=dls, schema_name=schema)
    producer = conn.create_producer(station, "p")
    try:
        producer.produce({"not": "valid"})
    except memphis.MemphisSchemaError:
        pass
    else:
        raise AssertionError("an invalid message was accepted")
    watcher = conn.create_consumer(dls, "watch", batch_max_wait_time=WAIT)
    (msg,) = wait_until(watcher.fetch, timeout=20, what="the failed message in the dls_station")
    assert msg.data == b'{"not":"valid"}'
    assert msg.headers["type"] == "failed_schema"
    assert msg.headers["station"] == station


def test_resent_poison_message_comes_back_and_its_ack_clears_the_dls(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p").produce(b"poison", headers={"k": "v"})
    consumer, _seen = _poison(conn, station, "c", deliveries=1)
    _pull_until([consumer], lambda: probe.dls_rows(station), what="a poison row")
    assert probe.resend_dls(station) == 1
    (msg,) = wait_until(consumer.fetch, timeout=10, what="the resent message")
    assert msg.data == b"poison"
    assert dict(msg.headers) == {"k": "v"}  # $memphis_pm_* hidden
    with pytest.raises(memphis.MemphisError, match=r"^cannot delay DLS message$"):
        msg.delay(1.0)
    msg.ack()  # no JetStream reply subject: acked through $memphis_pm_acks
    wait_until(lambda: probe.dls_rows(station) == [], timeout=10, what="the row to clear")


def test_poison_is_not_recorded_when_disabled_but_dead_letter_station_still_works(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    off, on = name("off"), name("on")
    conn.create_station(off, send_poison_msg_to_dls=False)
    conn.create_station(on)
    conn.create_producer(off, "p").produce(b"x")
    conn.create_producer(on, "p").produce(b"y")
    off_consumer, _ = _poison(conn, off, "c", deliveries=1)
    on_consumer, _ = _poison(conn, on, "c", deliveries=1)
    # The broker handles the MAX_DELIVERIES advisories in order and the "off" consumer pulls
    # first in every round, so once the "on" row exists the "off" one would exist too.
    _pull_until(
        [off_consumer, on_consumer], lambda: probe.dls_rows(on), what="the enabled station's row"
    )
    assert probe.dls_rows(off) == []
