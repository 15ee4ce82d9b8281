"""A station create interrupted between its streams and its record is repaired at start-up.

``_materialise`` creates the partition streams first and the record second; a control plane
stopped in between leaves streams without a record. The next control plane to start adopts
them as the station they describe, so the messages they hold stay, and every later create,
producer and consumer of that station works (docs/broker.md, "Interrupted creates").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from memphis_broker import ControlPlane, EmbeddedBroker
from memphis_broker._jsapi import JSApi
from memphis_broker._stations import stream_config
from tests.support.control_client import connect
from tests.support.waits import poll

PARTITIONS = [1, 2]
STATION: dict[str, object] = {
    "name": "orders.eu",
    "retention_type": "messages",
    "retention_value": 500,
    "storage_type": "memory",
    "replicas": 1,
    "idempotency_window_ms": 30_000,
    "partitions": PARTITIONS,
}


def test_streams_without_a_record_are_adopted_when_the_control_plane_starts(
    tmp_path: Path,
) -> None:
    with EmbeddedBroker(store_dir=tmp_path / "store", control_plane=False) as broker:

        async def main() -> None:
            c = await connect(broker)
            try:
                # What an interrupted create leaves: both partition streams, a message in one,
                # no record.
                api = JSApi(c.nc)
                for p in PARTITIONS:
                    await api.create_stream(stream_config(STATION, p))
                await c.js.publish("orders#eu$1.final", b"kept")
                async with ControlPlane(
                    broker.url, request_budget=0.5, **broker.control_plane_options()
                ):

                    async def adopted() -> list[dict[str, object]]:
                        return [r for r in await c.rows("stations") if r["name"] == "orders.eu"]

                    (record,) = await poll(adopted, timeout=20)
                    assert record["partitions"] == [1, 2]
                    assert (record["retention_type"], record["retention_value"]) == (
                        "messages",
                        500,
                    )
                    assert record["storage_type"] == "memory"
                    assert record["idempotency_window_ms"] == 30_000
                    # Any create of the station now finds it, whatever its options; producing
                    # goes on, and the stored message is still there.
                    assert await c.create_station("orders.eu", retention_type="bytes") == ""
                    assert (await c.create_producer("orders.eu", "p"))["error"] == ""
                    info = await api.stream_info("orders#eu$1")
                    assert info is not None
                    assert info["state"]["messages"] == 1
            finally:
                await c.nc.close()

        asyncio.run(asyncio.wait_for(main(), 60))
