"""Station create/destroy (docs/protocol.md §5.4, §5.7, §5) against real JetStream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.control_client import Body, Client

Run = Callable[[Body], None]
SEC = 1_000_000_000
MS = 1_000_000


@pytest.mark.parametrize(
    ("fields", "expect"),
    [
        (
            {"retention_type": "message_age_sec", "retention_value": 600},
            {"retention": "limits", "max_age": 600 * SEC, "max_msgs": -1, "max_bytes": -1},
        ),
        (
            {"retention_type": "MESSAGES", "retention_value": 10},
            {"retention": "limits", "max_age": 0, "max_msgs": 10, "max_bytes": -1},
        ),
        (
            {"retention_type": "bytes", "retention_value": 4096},
            {"retention": "limits", "max_age": 0, "max_msgs": -1, "max_bytes": 4096},
        ),
        (
            {"retention_type": "ack_based", "retention_value": 0},
            {"retention": "interest", "max_age": 0, "max_msgs": -1, "max_bytes": -1},
        ),
        # value <= 0 on a non-ack_based type falls back to message_age_sec/3600 (docs/protocol.md
        # §5.4 step 8)
        (
            {"retention_type": "messages", "retention_value": 0},
            {"retention": "limits", "max_age": 3600 * SEC, "max_msgs": -1},
        ),
        (
            {"retention_type": "", "retention_value": 5},
            {"retention": "limits", "max_age": 3600 * SEC},
        ),
        ({"storage_type": "memory"}, {"storage": "memory"}),
        ({"storage_type": "FILE"}, {"storage": "file"}),
        ({"storage_type": ""}, {"storage": "file"}),
        ({"replicas": 0}, {"num_replicas": 1}),
        ({"replicas": -3}, {"num_replicas": 1}),
        ({"idempotency_window_in_ms": 0}, {"duplicate_window": 120_000 * MS}),
        ({"idempotency_window_in_ms": -5}, {"duplicate_window": 120_000 * MS}),
        ({"idempotency_window_in_ms": 7}, {"duplicate_window": 100 * MS}),
        ({"idempotency_window_in_ms": 1234}, {"duplicate_window": 1234 * MS}),
        (
            {
                "retention_type": "messages",
                "retention_value": 5,
                "idempotency_window_in_ms": 86_400_000,
            },
            {"duplicate_window": 86_400_000 * MS},
        ),
    ],
)
def test_stream_config_mapping(
    run: Run, name: str, fields: dict[str, Any], expect: dict[str, Any]
) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, **fields) == ""
        info = await c.api.stream_info(f"{name}$1")
        assert info is not None
        cfg = info["config"]
        for k, v in expect.items():
            assert cfg[k] == v, k
        # Fixed parts of docs/protocol.md §5.5
        assert cfg["subjects"] == [f"{name}$1.>"]
        assert cfg["discard"] == "old"
        assert cfg["max_consumers"] == -1
        assert cfg["max_msgs_per_subject"] == -1

    run(body)


def test_partitions_and_internal_name(run: Run, name: str) -> None:
    ext = f"My.{name}"

    async def body(c: Client) -> None:
        assert await c.create_station(ext, partitions_number=3) == ""
        intern = ext.lower().replace(".", "#")
        for p in (1, 2, 3):
            info = await c.api.stream_info(f"{intern}${p}")
            assert info is not None
            assert info["config"]["subjects"] == [f"{intern}${p}.>"]
        assert await c.api.stream_info(f"{intern}$4") is None
        reply = await c.create_producer(ext, "p")
        assert reply["partitions_update"] == {"partitions_list": [1, 2, 3]}

    run(body)


def test_create_is_idempotent_and_keeps_the_first_config(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, retention_type="messages", retention_value=7) == ""
        assert await c.create_station(name, retention_type="bytes", retention_value=99) == ""
        info = await c.api.stream_info(f"{name}$1")
        assert info is not None
        assert info["config"]["max_msgs"] == 7

    run(body)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"partitions_number": 0}, "you are using an old SDK, make sure to update your SDK"),
        (
            {"partitions_number": -2},
            "cannot create station with -2 partitions (max:10000 min:1): Station -  {name}, ",
        ),
        (
            {"retention_type": "forever"},
            "retention type can be one of the following message_age_sec/messages/bytes/ack_based",
        ),
        ({"storage_type": "disk"}, "storage type can be one of the following file/memory"),
        (
            {
                "retention_type": "messages",
                "retention_value": 5,
                "idempotency_window_in_ms": 86_400_001,
            },
            "idempotency window can not exceed 24 hours",
        ),
        (
            {
                "retention_type": "message_age_sec",
                "retention_value": 10,
                "idempotency_window_in_ms": 10_001,
            },
            "idempotency window cannot be greater than the station retention",
        ),
        (
            {"replicas": 2},
            "station can not be created, probably since replicas count is larger than the "
            "cluster size",
        ),
        (
            {"replicas": 9},
            "station can not be created, probably since replicas count is larger than the "
            "cluster size",
        ),
        (
            {"username": "root$7"},
            "createStationDirect: Station {name}: Tenant with id 7 does not exist",
        ),
        ({"schema_name": "no-such-schema"}, "Schema no-such-schema does not exist"),
        (
            {"dls_station": "_bad"},
            "Station name can not start or end with non alphanumeric character",
        ),
    ],
)
def test_create_errors(run: Run, name: str, fields: dict[str, Any], text: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, **fields) == text.format(name=name)
        # Nothing half-created is left behind.
        assert await c.api.stream_info(f"{name}$1") is None
        assert await c.create_station(name) == ""  # and the name is still free

    run(body)


@pytest.mark.parametrize(
    ("station", "text"),
    [
        ("", "Station name can not be empty"),
        ("a" * 129, "Station should be under 128 characters"),
        ("bad name", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("with#hash", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("-edge", "Station name can not start or end with non alphanumeric character"),
        ("edge.", "Station name can not start or end with non alphanumeric character"),
    ],
)
def test_name_validation(run: Run, station: str, text: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(station) == text
        assert (
            await c.text(
                "$memphis_station_destructions", {"station_name": station, "username": "root"}
            )
            == text
        )

    run(body)


def test_name_of_exactly_128_is_allowed_and_upper_case_is_folded(run: Run, name: str) -> None:
    long = (name + "x" * 128)[:128]

    async def body(c: Client) -> None:
        assert await c.create_station(long) == ""
        assert await c.api.stream_info(f"{long}$1") is not None
        assert await c.create_station(name.upper()) == ""
        assert await c.api.stream_info(f"{name}$1") is not None

    run(body)


def test_dls_station_is_auto_created_with_the_default_recipe(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, dls_station=f"{name}-DLS") == ""
        info = await c.api.stream_info(f"{name}-dls$1")
        assert info is not None
        cfg = info["config"]
        assert cfg["max_age"] == 3600 * SEC
        assert cfg["storage"] == "file"
        assert cfg["duplicate_window"] == 120_000 * MS

    run(body)


def test_destroy_removes_streams_durables_and_rows(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=2) == ""
        await c.create_producer(name, "p")
        assert await c.create_consumer(name, "c") != ""
        assert await c.api.consumer_info(f"{name}$2", "c") is not None
        assert (
            await c.text(
                "$memphis_station_destructions", {"station_name": name, "username": "root"}
            )
            == ""
        )
        assert await c.api.stream_info(f"{name}$1") is None
        assert await c.api.stream_info(f"{name}$2") is None
        assert not [r for r in await c.rows("producers") if r["station"] == name]
        assert not [r for r in await c.rows("consumers") if r["station"] == name]
        assert not [r for r in await c.rows("stations") if r["name"] == name]
        # docs/protocol.md §5.7 step 5, verbatim
        assert (
            await c.text(
                "$memphis_station_destructions", {"station_name": name, "username": "root"}
            )
            == "Station  does not exist"
        )
        assert (
            await c.text("$memphis_station_destructions", {"station_name": name, "username": "x$3"})
            == f"removeStationDirectIntern: Station {name}: Tenant with id 3 does not exist"
        )

    run(body)


def test_destroying_a_dls_station_clears_the_reference(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, dls_station=f"{name}-dls") == ""
        assert (
            await c.text(
                "$memphis_station_destructions", {"station_name": f"{name}-dls", "username": "root"}
            )
            == ""
        )
        (row,) = [r for r in await c.rows("stations") if r["name"] == name]
        assert row["dls_station"] == ""

    run(body)


def test_stored_record(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert (
            await c.create_station(
                name,
                replicas=-1,
                partitions_number=2,
                dls_configuration={"Poison": False, "SCHEMAVERSE": True},
                tiered_storage_enabled=True,
            )
            == ""
        )
        (row,) = [r for r in await c.rows("stations") if r["name"] == name]
        assert row["version"] == 2
        assert row["partitions"] == [1, 2]
        assert row["replicas"] == 1
        assert row["dls_configuration"] == {"poison": False, "schemaverse": True}
        reply = await c.create_producer(name, "p")
        assert reply["schemaverse_to_dls"] is True

    run(body)


def test_jetstream_errors_are_replied_as_description_and_code(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        # A foreign stream already holds the name with another config.
        await c.api.create_stream({"name": f"{name}$1", "subjects": [f"foreign-{name}.>"]})
        reply = await c.create_station(name)
        # "<description> (<err_code>)" (docs/protocol.md §11.3)
        assert reply.endswith(" (10058)"), reply
        assert not [r for r in await c.rows("stations") if r["name"] == name]
        info = await c.api.stream_info(f"{name}$1")
        assert info is not None  # not ours, so not rolled back

    run(body)


def test_rollback_of_created_partitions(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        await c.api.create_stream({"name": f"{name}$3", "subjects": [f"foreign-{name}.>"]})
        assert (await c.create_station(name, partitions_number=3)).endswith("(10058)")
        assert await c.api.stream_info(f"{name}$1") is None
        assert await c.api.stream_info(f"{name}$2") is None

    run(body)


def test_stock_jetstream_dedups_on_nats_msg_id(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        # Our client sends the id as both msg-id and Nats-Msg-Id so the stream's
        # duplicate window (the idempotency window) deduplicates without a proxy (docs/protocol.md
        # §6.5).
        assert await c.create_station(name, idempotency_window_in_ms=60_000) == ""
        for _ in range(3):
            await c.js.publish(
                f"{name}$1.final", b"once", headers={"msg-id": "42", "Nats-Msg-Id": "42"}
            )
        info = await c.api.stream_info(f"{name}$1")
        assert info is not None
        assert info["state"]["messages"] == 1

    run(body)
