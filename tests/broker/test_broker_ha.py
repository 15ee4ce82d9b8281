"""Two control-plane instances at once, control-plane restarts and nats-server crashes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import nats.errors

from memphis_broker import ControlPlane, EmbeddedBroker
from tests.support.control_client import Client, connect
from tests.support.waits import poll

PROTO = 'syntax = "proto3";\nmessage Thing { string id = 1; }\n'


async def _drained(c: Client, stream: str, durable: str) -> bool:
    info = await c.api.consumer_info(stream, durable)
    return bool(info and info["num_pending"] == 0 and info["num_ack_pending"] == 0)


def test_two_instances_share_the_work_without_duplicates(tmp_path: Path) -> None:
    async def main(broker: EmbeddedBroker) -> None:
        second = ControlPlane([broker.url], **broker.control_plane_options())
        await second.start()
        c = await connect(broker)
        try:
            assert await c.create_station("shared", dls_station="shared-dls") == ""
            replies = await asyncio.gather(
                *(c.create_producer("shared", f"p{i}") for i in range(30))
            )
            assert all(r["error"] == "" for r in replies)
            # a request handled twice would have inserted two rows
            rows = [r for r in await c.rows("producers") if r["station"] == "shared"]
            assert len(rows) == 30

            # Concurrent creates of one station on both instances: one record, all "succeed".
            racers = await asyncio.gather(*(c.create_station("race") for _ in range(12)))
            assert set(racers) <= {"", "Stationrace already exists"}
            assert len([r for r in await c.rows("stations") if r["name"] == "race"]) == 1
            auto = await asyncio.gather(*(c.create_producer("auto-race", "p") for _ in range(12)))
            assert all(r["error"] == "" for r in auto)

            # One poison message -> one DLS row and one copy in the dls_station.
            await c.create_consumer("shared", "g", max_msg_deliveries=1, max_ack_time_ms=100)
            await c.js.publish("shared$1.final", b"p", headers={"$memphis_producedBy": "x"})
            sub = await c.js.pull_subscribe_bind("g", stream="shared$1")

            async def copied() -> bool:
                with contextlib.suppress(nats.errors.TimeoutError):
                    await sub.fetch(1, timeout=0.3)
                info = await c.api.stream_info("shared-dls$1")
                return bool(info and info["state"]["messages"] >= 1)

            await poll(copied, timeout=30, interval=0)
            await poll(
                lambda: _drained(c, "$memphis_dls_unacked", "$memphis_dls_unacked_consumer"),
                timeout=15,
            )
            rows = [r for r in await c.rows("dls") if r["station"] == "shared"]
            assert len(rows) == 1
            info = await c.api.stream_info("shared-dls$1")
            assert info is not None
            assert info["state"]["messages"] == 1

            # With the embedded instance gone, the second one serves alone.
            await asyncio.to_thread(broker.stop_control_plane)
            assert (await c.create_producer("shared", "late"))["error"] == ""
        finally:
            await c.nc.close()
            await second.stop()

    with EmbeddedBroker(store_dir=tmp_path) as broker:
        asyncio.run(main(broker))


def test_control_plane_restart_keeps_everything(tmp_path: Path) -> None:
    with EmbeddedBroker(store_dir=tmp_path) as broker:

        async def before() -> dict[str, Any]:
            c = await connect(broker)
            try:
                assert await c.create_station("keep", partitions_number=2) == ""
                schema = {
                    "name": "thing",
                    "type": "protobuf",
                    "schema_content": PROTO,
                    "created_by_username": "root",
                    "message_struct_name": "",
                }
                assert (await c.json("$memphis_schema_creations", schema))["error"] == ""
                assert (
                    await c.text(
                        "$memphis_schema_attachments",
                        {"name": "thing", "station_name": "keep", "username": "root"},
                    )
                    == ""
                )
                report = {
                    "station_name": "keep",
                    "producer": {"name": "p"},
                    "message": {"data": "00", "headers": {}},
                    "validation_error": "v",
                }
                await c.nc.publish("$memphis_schemaverse_dls", json.dumps(report).encode())
                reply = await c.create_consumer("keep", "c")
                assert '"error":""' in reply, reply
                await poll(lambda: c.rows("dls"), timeout=15)
                return {"conn_id": c.conn_id, "dls": await c.rows("dls")}
            finally:
                await c.nc.close()

        state = asyncio.run(before())
        broker.stop_control_plane()
        broker.start_control_plane()

        async def after() -> None:
            c = await connect(broker)
            c.conn_id = state["conn_id"]
            try:
                reply = await c.create_producer("keep", "p2")
                assert reply["partitions_update"]["partitions_list"] == [1, 2]
                assert reply["schema_update"]["schema_name"] == "thing"
                assert await c.rows("dls") == state["dls"]
                # the consumer row survived: destroying it finds it and removes the durables
                assert await c.destroy("consumer", "keep", "c") == ""
                assert await c.api.consumer_info("keep$1", "c") is None
            finally:
                await c.nc.close()

        asyncio.run(after())


def test_nats_server_kill_and_restart(tmp_path: Path) -> None:
    with EmbeddedBroker(store_dir=tmp_path) as broker:

        async def seed() -> None:
            c = await connect(broker)
            try:
                assert (
                    await c.create_station(
                        "durable", retention_type="messages", retention_value=100
                    )
                    == ""
                )
                await c.js.publish("durable$1.final", b"kept")
            finally:
                await c.nc.close()

        asyncio.run(seed())
        port = broker.port
        broker.kill_server()
        assert not broker.server.running
        broker.start_server()
        assert broker.port == port

        async def check() -> None:
            c = await connect(broker)
            try:
                info = await c.api.stream_info("durable$1")
                assert info is not None
                assert info["state"]["messages"] == 1

                # the control plane reconnected by itself and still knows the station
                async def served() -> Any:
                    # until the control plane has reconnected nobody answers
                    with contextlib.suppress(nats.errors.NoRespondersError):
                        return await c.create_producer("durable", "p")
                    return None

                reply = await poll(served, timeout=20)
                assert reply["partitions_update"]["partitions_list"] == [1]
                assert await c.create_station("durable") == ""
            finally:
                await c.nc.close()

        asyncio.run(check())
