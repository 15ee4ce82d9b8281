"""Introspection: ``consumer.info()``, ``conn.stations()``, ``conn.station_info()`` /
``station.info()``, ``conn.schemas()`` and ``Station.name``, against the broker's own state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.names import SCHEMAS
from tests.support.waits import wait_until

N = 6  # messages produced
PARTITIONS = 2


def test_consumer_info_counts_lag_and_unacked(conn: Any, name: Callable[[str], str]) -> None:
    station = conn.create_station(name("st"), partitions_number=PARTITIONS)
    consumer = station.create_consumer(name("c"), consumer_group=name("g"))
    empty = consumer.info()
    assert (empty.num_pending, empty.num_ack_pending, empty.num_redelivered) == (0, 0, 0)
    assert [p.partition for p in empty.partitions] == [1, 2]

    producer = station.create_producer(name("p"))
    # All in partition 1: a fetch pulls every partition at once and keeps what it does not hand
    # out (docs/protocol.md §7.5), so with messages in both partitions more could be delivered
    # (and counted as ack pending) than the fetch returns.
    for i in range(N):
        producer.produce(f"m{i}".encode(), partition_number=1)
    info = consumer.info()
    assert info.num_pending == N
    assert info.num_ack_pending == 0
    assert sum(p.num_pending for p in info.partitions) == N
    assert info.consumer_group == consumer.consumer_group

    fetched = consumer.fetch(batch_size=2)
    k = len(fetched)
    assert 1 <= k <= 2
    held = consumer.info()
    assert held.num_ack_pending == k  # delivered, not acked yet
    assert held.num_pending == N - k

    for msg in fetched:
        msg.ack()
    # Acks are published without a reply: wait until JetStream has counted them.
    done = wait_until(
        lambda: (i := consumer.info()).num_ack_pending == 0 and i, what="acks counted"
    )
    assert done.num_pending == N - k
    assert done.num_redelivered == 0
    assert sum(p.ack_floor_seq for p in done.partitions) == k


def test_station_info_reports_configuration_schema_and_dls(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = name("schema")
    conn.create_schema(schema, memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
    dls = name("dls")
    station = conn.create_station(
        name("st"),
        partitions_number=3,
        retention_type=memphis.RetentionType.MESSAGES,
        retention_value=1000,
        storage_type=memphis.StorageType.MEMORY,
        idempotency_window=30.0,
        schema_name=schema,
        send_poison_msg_to_dls=False,
        dls_station=dls,
    )
    group = name("g")
    station.create_consumer(name("c"), consumer_group=group)

    info = station.info()
    assert isinstance(info, memphis.StationInfo)
    assert info.name == station.name
    assert [p.partition for p in info.partitions] == [1, 2, 3]
    assert (info.retention_type, info.retention_value) == ("messages", 1000)
    assert info.storage_type == "memory"
    assert info.replicas == 1
    assert info.idempotency_window == pytest.approx(30.0)
    assert info.schema == schema
    assert info.dls == memphis.DlsSettings(poison=False, schemaverse=True, dls_station=dls)
    assert info.consumer_groups == (group,)
    assert info == conn.station_info(station.name)


def test_station_info_counts_messages(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    station = conn.create_station(name("st"), partitions_number=PARTITIONS)
    producer = station.create_producer(name("p"))
    for i in range(N):
        producer.produce(f"m{i}".encode(), partition_number=1 + i % PARTITIONS)
    info = station.info()
    assert info.messages == N
    assert [p.messages for p in info.partitions] == [N // 2, N // 2]
    assert [p.last_seq for p in info.partitions] == [N // 2, N // 2]
    assert info.stored_bytes == sum(p.stored_bytes for p in info.partitions) > 0
    assert info.schema == ""  # none enforced
    assert info.dls == memphis.DlsSettings(poison=True, schemaverse=True, dls_station="")


def test_stations_lists_every_station(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    first = conn.create_station(name("a"), partitions_number=2)
    second = conn.create_station(name("b"), retention_type="bytes", retention_value=4096)
    listed = {s.name: s for s in conn.stations()}
    assert {first.name, second.name} <= set(listed)
    assert len(listed[first.name].partitions) == 2
    assert (listed[second.name].retention_type, listed[second.name].retention_value) == (
        "bytes",
        4096,
    )
    assert all(isinstance(s, memphis.StationInfo) for s in listed.values())
    # No KV bucket, no DLS stream, no other stream is taken for a station.
    assert not any(n.startswith(("kv_", "$")) for n in listed)


def test_station_info_of_a_missing_station(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    with pytest.raises(memphis.StationNotFoundError, match="does not exist"):
        conn.station_info(name("missing"))
    with pytest.raises(memphis.LocalProtocolError):
        conn.station_info("bad name!")


def test_schemas_lists_created_schemas(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    schema = name("schema")
    conn.create_schema(schema, memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
    schemas = conn.schemas()
    assert schemas is not None
    found = {s.name: s for s in schemas}[schema]
    assert (found.type, found.versions, found.active_version) == ("json", 1, 1)


def test_station_has_its_name(conn: Any, name: Callable[[str], str]) -> None:
    given = name("st")
    assert conn.create_station(given).name == given
