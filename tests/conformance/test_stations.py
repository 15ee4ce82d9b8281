"""Stations: defaults, every option, idempotent creation, destroy, auto-creation, bad input.

Effects are checked on the broker's JetStream streams (``<internal>$<p>``) through the probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.probe import BrokerProbe

WAIT = 0.3  # batch_max_wait_time for fetches that are expected to come back empty


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def test_defaults(conn: Any, probe: BrokerProbe, name: Callable[[str], str]) -> None:
    station = name("st")
    conn.create_station(station)
    config = probe.stream_config(station, 1)
    assert config is not None
    assert config.subjects == [f"{probe.stream(station)}.>"]
    assert config.max_age == pytest.approx(3600)  # MAX_MESSAGE_AGE_SECONDS, 3600
    assert config.max_msgs == -1
    assert config.max_bytes == -1
    assert _enum(config.retention) == "limits"
    assert _enum(config.storage) == "file"  # DISK
    assert config.num_replicas == 1
    assert config.duplicate_window == pytest.approx(120)  # idempotency_window=120.0
    assert not probe.stream_exists(station, 2)  # partitions_number=1
    doc = probe.station_doc(station)
    assert doc is not None
    assert doc["dls_configuration"] == {"poison": True, "schemaverse": True}
    assert doc.get("dls_station", "") == ""
    assert doc.get("tiered_storage_enabled", False) is False


def test_enum_values_are_the_wire_values(memphis: Any) -> None:
    assert memphis.RetentionType.MAX_MESSAGE_AGE_SECONDS == "message_age_sec"
    assert memphis.RetentionType.MESSAGES == "messages"
    assert memphis.RetentionType.BYTES == "bytes"
    assert memphis.RetentionType.ACK_BASED == "ack_based"
    assert memphis.StorageType.DISK == "file"
    assert memphis.StorageType.MEMORY == "memory"
    assert {t.value for t in memphis.SchemaType} == {"protobuf", "json", "graphql", "avro"}
    assert all(isinstance(t, str) for t in memphis.SchemaType)


@pytest.mark.parametrize("as_string", [False, True], ids=["enum", "string"])
def test_retention_messages_and_memory_storage(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str], as_string: bool
) -> None:
    station = name("st")
    retention = "messages" if as_string else memphis.RetentionType.MESSAGES
    storage = "memory" if as_string else memphis.StorageType.MEMORY
    conn.create_station(
        station, retention_type=retention, retention_value=100, storage_type=storage
    )
    config = probe.stream_config(station)
    assert config.max_msgs == 100
    assert _enum(config.storage) == "memory"
    assert not config.max_age


def test_retention_bytes(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(
        station, retention_type=memphis.RetentionType.BYTES, retention_value=1 << 20
    )
    config = probe.stream_config(station)
    assert config.max_bytes == 1 << 20
    assert config.max_msgs == -1


def test_retention_ack_based_is_an_interest_stream(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, retention_type=memphis.RetentionType.ACK_BASED)
    assert _enum(probe.stream_config(station).retention) == "interest"


def test_retention_by_age_and_idempotency_window(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(
        station,
        retention_type=memphis.RetentionType.MAX_MESSAGE_AGE_SECONDS,
        retention_value=600,
        idempotency_window=5.5,
    )
    config = probe.stream_config(station)
    assert config.max_age == pytest.approx(600)
    assert config.duplicate_window == pytest.approx(5.5)


def test_partitions_number_creates_one_stream_per_partition(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, partitions_number=3)
    for p in (1, 2, 3):
        config = probe.stream_config(station, p)
        assert config is not None, p
        assert config.subjects == [f"{probe.stream(station, p)}.>"]
    assert not probe.stream_exists(station, 4)


def test_dls_options_are_stored(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station, dls = name("st"), name("dls")
    conn.create_station(dls)
    conn.create_station(
        station,
        send_poison_msg_to_dls=False,
        send_schema_failed_msg_to_dls=False,
        tiered_storage_enabled=False,
        replicas=1,
        dls_station=dls,
    )
    doc = probe.station_doc(station)
    assert doc is not None
    assert doc["dls_configuration"] == {"poison": False, "schemaverse": False}
    assert doc["dls_station"] == dls


def test_missing_dls_station_is_created(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station, dls = name("st"), name("dls")
    conn.create_station(station, dls_station=dls)
    assert probe.stream_exists(dls)


def test_existing_station_is_returned_unchanged(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, retention_type=memphis.RetentionType.MESSAGES, retention_value=7)
    again = conn.create_station(
        station,
        retention_type=memphis.RetentionType.BYTES,
        retention_value=999,
        partitions_number=2,
    )
    config = probe.stream_config(station)
    assert config.max_msgs == 7
    assert config.max_bytes == -1
    assert not probe.stream_exists(station, 2)
    again.create_producer("p").produce(b"still usable")
    assert probe.message_count(station) == 1


def test_an_existing_station_with_other_options_is_logged(
    memphis: Any, conn: Any, name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    # Report: asking for 3 partitions and another retention on an existing 1-partition station
    # returned it silently; the caller learned nothing (docs/protocol.md §5.3).
    caplog.set_level(logging.WARNING, logger="memphis")
    station = name("st")
    conn.create_station(station, retention_type=memphis.RetentionType.MESSAGES, retention_value=7)
    assert not [r for r in caplog.records if "already exists" in r.getMessage()]
    conn.create_station(station, retention_type=memphis.RetentionType.MESSAGES, retention_value=7)
    assert not [r for r in caplog.records if "already exists" in r.getMessage()]  # as asked
    conn.create_station(
        station,
        retention_type=memphis.RetentionType.BYTES,
        retention_value=999,
        storage_type=memphis.StorageType.MEMORY,
        idempotency_window=30.0,
        partitions_number=3,
    )
    (record,) = [r for r in caplog.records if "already exists" in r.getMessage()]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith(f"station {station} already exists and was left unchanged: ")
    assert "retention_type: asked 'bytes', the station has 'messages'" in text
    assert "retention_value: asked 999, the station has 7" in text
    assert "storage_type: asked 'memory', the station has 'file'" in text
    assert "idempotency_window: asked 30.0, the station has 120.0" in text
    assert "partitions_number: asked 3, the station has fewer" in text
    assert "replicas" not in text  # the same


def test_destroy_removes_every_partition_stream(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    st = conn.create_station(station, partitions_number=2)
    st.create_producer("p").produce(b"x")
    st.destroy()
    assert not probe.stream_exists(station, 1)
    assert not probe.stream_exists(station, 2)
    assert probe.station_doc(station) is None


def test_destroy_twice_and_destroy_missing_are_not_errors(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    st = conn.create_station(station)
    st.destroy()
    st.destroy()  # "does not exist" is success (docs/protocol.md §5.7)
    assert not probe.stream_exists(station)


def test_station_can_be_recreated_after_destroy(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station).destroy()
    st = conn.create_station(station, partitions_number=2)
    assert probe.stream_exists(station, 2)
    st.create_producer("p").produce(b"again")
    consumer = st.create_consumer("c", batch_max_wait_time=WAIT)
    got = consumer.fetch(partition_number=1) + consumer.fetch(partition_number=2)
    assert [m.data for m in got] == [b"again"]


def test_producer_auto_creates_a_default_station(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p")
    config = probe.stream_config(station)
    assert config is not None
    assert config.max_age == pytest.approx(3600)
    assert config.duplicate_window == pytest.approx(120)
    assert not probe.stream_exists(station, 2)


def test_consumer_auto_creates_a_default_station(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_consumer(station, "c")
    assert probe.stream_exists(station)
    assert probe.consumer_config(station, "c") is not None


def test_mixed_case_and_dotted_names(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    base = name("st")
    station = f"My.{base}"
    st = conn.create_station(station)
    # Internal form: lower case, '.' -> '#' (docs/protocol.md §5.2).
    assert probe.stream_exists(station.lower())
    assert probe.stream(station) == f"my#{base}$1"
    st.create_producer("p").produce(b"dotted")
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT)
    assert [m.data for m in consumer.fetch()] == [b"dotted"]


@pytest.mark.parametrize(
    ("bad_name", "text"),
    [
        ("", "Station name can not be empty"),
        ("a" * 129, "Station should be under 128 characters"),
        ("has space", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("bad#name", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("-lead", "Station name can not start or end with non alphanumeric character"),
        ("trail.", "Station name can not start or end with non alphanumeric character"),
        ("_under", "Station name can not start or end with non alphanumeric character"),
    ],
)
def test_bad_station_names(memphis: Any, conn: Any, bad_name: str, text: str) -> None:
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_station(bad_name)
    assert str(info.value) == text
    with pytest.raises(memphis.LocalProtocolError):
        conn.create_producer(bad_name, "p")
    with pytest.raises(memphis.LocalProtocolError):
        conn.create_consumer(bad_name, "c")


def test_name_of_exactly_128_characters_is_allowed(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    station = station + "x" * (128 - len(station))
    conn.create_station(station)
    assert probe.stream_exists(station)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"retention_type": "forever"},
            "retention type can be one of the following message_age_sec/messages/bytes/ack_based",
        ),
        ({"storage_type": "ssd"}, "storage type can be one of the following file/memory"),
        ({"idempotency_window": 86_401.0}, "idempotency window can not exceed 24 hours"),
        ({"partitions_number": 10_001}, "cannot create station with 10001 partitions"),
        ({"partitions_number": -1}, "cannot create station with -1 partitions"),
        ({"retention_value": -5}, None),
        ({"replicas": 0}, None),
    ],
    ids=["retention", "storage", "window", "partitions-hi", "partitions-neg", "value", "replicas"],
)
def test_bad_station_options_are_local_errors(
    memphis: Any,
    conn: Any,
    probe: BrokerProbe,
    name: Callable[[str], str],
    kwargs: dict[str, Any],
    text: str | None,
) -> None:
    station = name("st")
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_station(station, **kwargs)
    if text is not None:
        assert str(info.value).startswith(text)
    assert not probe.stream_exists(station)


def test_idempotency_window_longer_than_retention_is_refused_by_the_broker(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    with pytest.raises(memphis.MemphisError) as info:
        conn.create_station(station, retention_value=10, idempotency_window=60.0)
    assert "idempotency window cannot be greater than the station retention" in str(info.value)
    assert not probe.stream_exists(station)


def test_unknown_schema_name_is_refused(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    with pytest.raises(memphis.MemphisError, match="does not exist"):
        conn.create_station(station, schema_name=name("no-such-schema"))
    assert not probe.stream_exists(station)


def test_more_replicas_than_servers_is_refused_by_the_broker(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    with pytest.raises(memphis.MemphisError) as info:
        conn.create_station(station, replicas=3)
    assert str(info.value) == (
        "station can not be created, probably since replicas count is larger than the cluster "
        "size"
    )
    assert not probe.stream_exists(station)


def test_tiered_storage_flag_is_accepted_and_stored(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, tiered_storage_enabled=True)
    doc = probe.station_doc(station)
    assert doc is not None
    assert doc["tiered_storage_enabled"] is True


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_idempotency_window_below_the_brokers_floor_is_refused(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: idempotency_window=0 was accepted and the broker used 120 s.
    for window in (0, 0.05):
        with pytest.raises(memphis.LocalProtocolError, match="idempotency_window"):
            conn.create_station(name("st"), idempotency_window=window)
    conn.create_station(name("st"), idempotency_window=0.1)
