"""Producers and consumers (docs/protocol.md §6.1-docs/protocol.md §7.12, §7.3) against real
JetStream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import nats
import pytest

from memphis_broker import EmbeddedBroker
from tests.support.control_client import Body, Client, connect
from tests.support.waits import poll

Run = Callable[[Body], None]
MS = 1_000_000
EMPTY_UPDATE = (
    '{"schema_name":"","active_version":{"version_number":0,"descriptor":"",'
    '"schema_content":"","message_struct_name":""},"type":""}'
)


def _producer(c: Client, station: str, pname: str, /, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": pname,
        "station_name": station,
        "connection_id": c.conn_id,
        "producer_type": "application",
        "req_version": 4,
        "username": "root",
        "app_id": "app",
        "sdk_lang": "go",
    }
    body.update(fields)
    return body


def test_producer_reply_is_byte_exact(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=2) == ""
        raw = await c.request("$memphis_producer_creations", _producer(c, name, "P1"))
        assert raw.decode() == (
            '{"schema_update":' + EMPTY_UPDATE + ',"partitions_update":{"partitions_list":[1,2]},'
            '"schemaverse_to_dls":true,"send_notification":false,"station_version":2,'
            '"station_partitions_first_functions":{},"error":""}'
        )
        (row,) = [r for r in await c.rows("producers") if r["station"] == name]
        assert row["name"] == "p1"  # lower-cased
        assert row["is_active"] is True
        assert row["app_id"] == "app"
        assert row["sdk"] == "go"

    run(body)


def test_producer_error_reply_shape(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        raw = await c.request("$memphis_producer_creations", _producer(c, name, "bad name"))
        assert raw.decode() == (
            '{"schema_update":' + EMPTY_UPDATE + ',"partitions_update":{"partitions_list":null},'
            '"schemaverse_to_dls":false,"send_notification":false,"station_version":0,'
            '"station_partitions_first_functions":null,"error":"Only alphanumeric and the '
            "'_', '-', '.' characters are allowed in Producer\"}"
        )

    run(body)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"station_name": ""}, "Station name can not be empty"),
        ({"name": ""}, "Producer name can not be empty"),
        ({"name": "x" * 129}, "Producer should be under 128 characters"),
        (
            {"producer_type": "robot"},
            "producer type has to be one of the following application/connector",
        ),
        (
            {"req_version": 1},
            "this station does not exist, a default station can not be created automatically, "
            "please upgrade your SDK version",
        ),
        (
            # v0 fallback replies plain text (docs/protocol.md §6.1 edge case) ...
            {"req_version": "4"},
            None,
        ),
        (
            {"name": 7},
            "json: cannot unmarshal number 7 into Go struct field "
            "CreateProducerRequestV3.name of type string",
        ),
    ],
)
def test_producer_errors(run: Run, name: str, fields: dict[str, Any], text: str | None) -> None:
    async def body(c: Client) -> None:
        raw = await c.request("$memphis_producer_creations", _producer(c, name, "p", **fields))
        if text is None:
            # ... and as v0 there is no auto-creation.
            assert raw.decode() == (
                "this station does not exist, a default station can not be created "
                "automatically, please upgrade your SDK version"
            )
            return
        assert json.loads(raw)["error"] == text

    run(body)


def test_producer_old_sdk_on_partitioned_station(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        reply = await c.json("$memphis_producer_creations", _producer(c, name, "p", req_version=1))
        assert reply["error"] == "to produce to this station please upgrade your SDK version"
        reply = await c.json("$memphis_producer_creations", _producer(c, name, "p", req_version=3))
        assert reply["error"] == ""
        rows = [r for r in await c.rows("producers") if r["station"] == name]
        # docs/protocol.md §6.1: before v4 the app id is the connection id and sdk_lang is dropped
        assert rows[0]["app_id"] == c.conn_id
        assert rows[0]["sdk"] == ""

    run(body)


def test_producer_auto_creates_default_station(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        reply = await c.create_producer(f"{name}.auto", "p")
        assert reply["error"] == ""
        assert reply["partitions_update"]["partitions_list"] == [1]
        info = await c.api.stream_info(f"{name}#auto$1")
        assert info is not None
        assert info["config"]["max_age"] == 3600 * 1_000_000_000

    run(body)


def test_producer_names_are_not_unique_and_destroy_is_per_connection(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        # Two connections may use one name (docs/protocol.md §6.1 step 7: two rows); the same
        # connection
        # registering it again is a retry and keeps one row (docs/broker.md, "Cluster safety").
        await c.create_producer(name, "dup")
        await c.create_producer(name, "dup")
        await c.create_producer(name, "dup", connection_id="another-connection")
        rows = [r for r in await c.rows("producers") if r["station"] == name]
        assert sorted(r["connection_id"] for r in rows) == sorted([c.conn_id, "another-connection"])
        other = await c.destroy("producer", name, "dup", connection_id="someone-else")
        assert other == f"Producer dup at station {name} does not exist"
        assert await c.destroy("producer", name, "DUP") == ""
        rows = [r for r in await c.rows("producers") if r["station"] == name]
        assert [r["connection_id"] for r in rows] == ["another-connection"]

    run(body)


def test_consumer_durable_config(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=2) == ""
        raw = await c.create_consumer(
            name, "C1", consumers_group="Grp.A", max_ack_time_ms=1500, max_msg_deliveries=3
        )
        assert raw == (
            '{"schema_update":' + EMPTY_UPDATE + ',"partitions_update":{"partitions_list":[1,2]},'
            '"error":""}'
        )
        for p in (1, 2):
            info = await c.api.consumer_info(f"{name}${p}", "grp#a")
            assert info is not None
            cfg = info["config"]
            assert cfg["durable_name"] == "grp#a"
            assert cfg["ack_policy"] == "explicit"
            assert cfg["ack_wait"] == 1500 * MS
            assert cfg["max_deliver"] == 3
            assert cfg["filter_subject"] == f"{name}${p}.final"
            assert cfg["deliver_policy"] == "all"
            assert cfg["replay_policy"] == "instant"
            assert cfg["max_ack_pending"] == -1
            assert "deliver_subject" not in cfg  # pull consumer

    run(body)


@pytest.mark.parametrize(
    ("ack", "deliveries", "want_ack", "want_deliver"),
    [(0, 0, 30000, 10), (-5, 11, 30000, 10), (1, 1, 1, 1), (100, 10, 100, 10), (100, -1, 100, 10)],
)
def test_consumer_defaults_and_caps(
    *, run: Run, name: str, ack: int, deliveries: int, want_ack: int, want_deliver: int
) -> None:
    async def body(c: Client) -> None:
        await c.create_consumer(name, "c", max_ack_time_ms=ack, max_msg_deliveries=deliveries)
        info = await c.api.consumer_info(f"{name}$1", "c")
        assert info is not None
        assert info["config"]["ack_wait"] == want_ack * MS
        assert info["config"]["max_deliver"] == want_deliver

    run(body)


async def _publish(c: Client, stream: str, n: int) -> None:
    for i in range(n):
        await c.js.publish(f"{stream}.final", str(i).encode())


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize(
    ("start", "last", "want"),
    [
        (1, -1, {"deliver_policy": "all"}),
        (1, 0, {"deliver_policy": "new"}),
        (4, -1, {"deliver_policy": "by_start_sequence", "opt_start_seq": 4}),
        # per partition: last_seq(5) - 2 + 1; with one partition too (quirk fixed, docs/protocol.md
        # §7.4)
        (1, 2, {"deliver_policy": "by_start_sequence", "opt_start_seq": 4}),
        (1, 50, {"deliver_policy": "by_start_sequence", "opt_start_seq": 1}),
    ],
)
def test_deliver_policy(
    *, run: Run, name: str, partitions: int, start: int, last: int, want: dict[str, Any]
) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=partitions) == ""
        for p in range(1, partitions + 1):
            await _publish(c, f"{name}${p}", 5)
        raw = await c.create_consumer(
            name, "c", start_consume_from_sequence=start, last_messages=last
        )
        assert json.loads(raw)["error"] == ""
        for p in range(1, partitions + 1):
            info = await c.api.consumer_info(f"{name}${p}", "c")
            assert info is not None
            for k, v in want.items():
                assert info["config"][k] == v

    run(body)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"start_consume_from_sequence": 0},
            "startConsumeFromSequence has to be a positive number",
        ),
        ({"last_messages": -2}, "min value for LastMessages is -1"),
        (
            {"start_consume_from_sequence": 2, "last_messages": 0},
            "consumer creation options can't contain both startConsumeFromSequence and "
            "lastMessages",
        ),
        ({"name": ""}, "Consumer name can not be empty"),
        (
            {"consumers_group": "bad group"},
            "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer",
        ),
        (
            {"consumer_type": "Robot"},
            "consumer type has to be one of the following application/connector and not robot",
        ),
        ({"station_name": "a" * 200}, "Station should be under 128 characters"),
        (
            {"req_version": 1},
            "This station does not exist, a default station can not be created automatically, "
            "please upgrade your SDK version",
        ),
        (
            {"start_consume_from_sequence": -1},
            "json: cannot unmarshal number -1 into Go struct field "
            "CreateConsumerRequestV3.start_consume_from_sequence of type uint64",
        ),
    ],
)
def test_consumer_errors_are_plain_text(
    run: Run, name: str, fields: dict[str, Any], text: str
) -> None:
    async def body(c: Client) -> None:
        assert await c.create_consumer(name, "c", **fields) == text
        assert await c.api.stream_info(f"{name}$1") is None

    run(body)


def test_consumer_old_sdk_on_partitioned_station(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        assert json.loads(await c.create_consumer(name, "a", consumers_group="g"))["error"] == ""
        assert await c.create_consumer(
            name, "b", consumers_group="g", req_version=1, last_messages=3
        ) == ("to consume from this station please upgrade your SDK version")

    run(body)


def test_group_update_and_deletion_with_last_member(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=2) == ""
        await c.create_consumer(name, "m1", consumers_group="g", max_msg_deliveries=2)
        await c.create_consumer(
            name, "m2", consumers_group="g", max_msg_deliveries=5, max_ack_time_ms=2000
        )
        info = await c.api.consumer_info(f"{name}$2", "g")
        assert info is not None
        assert info["config"]["max_deliver"] == 5  # updated in place (docs/protocol.md §7.2 step 6)
        assert info["config"]["ack_wait"] == 2000 * MS
        assert await c.destroy("consumer", name, "m1") == ""
        assert await c.api.consumer_info(f"{name}$1", "g") is not None  # m2 still active
        assert await c.destroy("consumer", name, "m2") == ""
        assert await c.api.consumer_info(f"{name}$1", "g") is None
        assert await c.api.consumer_info(f"{name}$2", "g") is None
        assert await c.destroy("consumer", name, "M2") == (
            f"Consumer M2 at station {name} does not exist"
        )

    run(body)


def test_durable_survives_recreate_and_keeps_position(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        await _publish(c, f"{name}$1", 3)
        await c.create_consumer(name, "c")
        sub = await c.js.pull_subscribe_bind("c", stream=f"{name}$1")
        for m in await sub.fetch(3, timeout=5):
            await m.ack()
        await c.create_consumer(name, "c2", consumers_group="c", last_messages=1)
        info = await c.api.consumer_info(f"{name}$1", "c")
        assert info is not None
        assert info["config"]["deliver_policy"] == "all"
        assert info["delivered"]["stream_seq"] == 3

    run(body)


def test_deleted_durable_is_recreated(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        await c.create_consumer(name, "c")
        await c.api.delete_consumer(f"{name}$1", "c")
        await c.create_consumer(name, "c")
        assert await c.api.consumer_info(f"{name}$1", "c") is not None

    run(body)


def test_disconnect_marks_rows_inactive_and_reconnect_reactivates(
    broker: EmbeddedBroker, run: Run, name: str
) -> None:
    async def body(c: Client) -> None:
        other = await connect(broker)
        await other.create_producer(name, "p")
        await other.create_consumer(name, "c")

        async def states(active: bool) -> bool:
            rows = [
                r
                for b in ("producers", "consumers")
                for r in await c.rows(b)
                if r["station"] == name
            ]
            return len(rows) == 2 and all(r["is_active"] is active for r in rows)

        await other.nc.close()
        await poll(lambda: states(False), timeout=15)
        # A reconnect (same connection id in the CONNECT name) re-activates the rows
        # (docs/protocol.md §10.1).
        nc = await nats.connect(name=f"{other.conn_id}::root", **broker.connect_options())
        try:
            await poll(lambda: states(True), timeout=15)
        finally:
            await nc.close()

    run(body)


def test_configurations_update_on_connect(broker: EmbeddedBroker, run: Run) -> None:
    async def body(c: Client) -> None:
        got: asyncio.Queue[Any] = asyncio.Queue()
        await c.nc.subscribe("$memphis_configurations_updates.init.>", cb=got.put)
        await c.nc.flush()
        other = await connect(broker)
        try:
            while True:
                msg = await asyncio.wait_for(got.get(), 15)
                if msg.subject.endswith(other.conn_id):
                    break
            assert json.loads(msg.data) == {"notifications": False}
        finally:
            await other.nc.close()

    run(body)


def test_short_lived_connection_rows_become_inactive(
    broker: EmbeddedBroker, run: Run, name: str
) -> None:
    async def body(c: Client) -> None:
        # Connect, register and leave well within one poll interval.
        for i in range(3):
            other = await connect(broker)
            await other.create_producer(name, f"p{i}")
            await other.nc.close()

        async def inactive() -> bool:
            rows = [r for r in await c.rows("producers") if r["station"] == name]
            return len(rows) == 3 and not any(r["is_active"] for r in rows)

        await poll(inactive, timeout=15)

    run(body)


def test_gc_of_old_inactive_rows_keeps_one_row_per_group(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        old = {
            "is_active": False,
            "updated_at": 1,
            "connection_id": "gone",
            "type": "application",
            "station": name,
        }
        producers = await c.js.key_value("memphis_producers")
        consumers = await c.js.key_value("memphis_consumers")
        await producers.put(f"{name}.old1", json.dumps({**old, "name": "p"}).encode())
        for i in range(3):
            row = {**old, "name": f"c{i}", "consumers_group": "g", "updated_at": 1 + i}
            await consumers.put(f"{name}.g.old{i}", json.dumps(row).encode())

        async def collected() -> bool:
            prods = [r for r in await c.rows("producers") if r["station"] == name]
            cons = [r for r in await c.rows("consumers") if r["station"] == name]
            return not prods and [r["name"] for r in cons] == ["c2"]  # the newest stays

        await poll(collected, timeout=15)

    run(body)
