"""Several control-plane instances over one server, and creates retried after a failure.

An SDK retries a control request whose reply did not come (the instance that received it died
after storing the row), and with one instance per node two instances may answer the same
request. Both must leave one row. All state is in KV, so what one instance does is what the
other sees at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memphis_broker import ControlPlane, EmbeddedBroker
from memphis_broker._clients import handle_consumer_create, handle_producer_create
from memphis_broker._stations import handle_station_create, handle_station_destroy
from tests.support.control_client import Client, connect
from tests.support.waits import poll


def _encode(body: dict[str, Any]) -> bytes:
    """A control request as the handlers take it off the wire."""
    return json.dumps(body).encode()


async def _rows(c: Client, bucket: str, station: str) -> list[dict[str, Any]]:
    return [r for r in await c.rows(bucket) if r["station"] == station]


@contextlib.asynccontextmanager
async def _two_instances(
    broker: EmbeddedBroker,
) -> AsyncIterator[tuple[ControlPlane, ControlPlane, Client]]:
    """Two started control planes on ``broker`` (``cp-a``, ``cp-b``) and a client; all three are
    stopped at the end."""
    opts = broker.control_plane_options()
    opts.pop("monitor_url")  # connection tracking is not what these tests are about
    a = ControlPlane([broker.url], name="cp-a", **opts)
    b = ControlPlane([broker.url], name="cp-b", **opts)
    await a.start()
    await b.start()
    c = await connect(broker)
    try:
        yield a, b, c
    finally:
        await c.nc.close()
        await a.stop()
        await b.stop()


def test_the_same_create_delivered_twice_stores_one_row(tmp_path: Path) -> None:
    async def main(broker: EmbeddedBroker) -> None:
        c = await connect(broker)
        try:
            assert await c.create_station("twice") == ""
            # Sequential (a retry after a lost reply) and concurrent (a retry racing the
            # original on another instance) deliveries of byte-identical requests.
            for _ in range(2):
                assert (await c.create_producer("twice", "p"))["error"] == ""
            replies = await asyncio.gather(*(c.create_producer("twice", "p") for _ in range(5)))
            assert all(r["error"] == "" for r in replies)
            assert len(await _rows(c, "producers", "twice")) == 1
            for _ in range(2):
                assert '"error":""' in await c.create_consumer("twice", "c")
            replies_c = await asyncio.gather(*(c.create_consumer("twice", "c") for _ in range(5)))
            assert all('"error":""' in r for r in replies_c)
            assert len(await _rows(c, "consumers", "twice")) == 1
            # One destroy removes the one row, and with it the group's durable.
            assert await c.destroy("consumer", "twice", "c") == ""
            assert await c.api.consumer_info("twice$1", "c") is None
        finally:
            await c.nc.close()

    with EmbeddedBroker(store_dir=tmp_path) as broker:
        asyncio.run(main(broker))


def test_two_instances_answering_one_create_store_one_row(tmp_path: Path) -> None:
    async def main(broker: EmbeddedBroker) -> None:
        async with _two_instances(broker) as (a, b, c):
            assert await c.create_station("both", partitions_number=2) == ""
            for attempt in range(5):
                body = _encode(c.producer_body("both", f"p{attempt}"))
                ra, rb = await asyncio.gather(
                    handle_producer_create(a.ctx, body), handle_producer_create(b.ctx, body)
                )
                assert json.loads(ra)["error"] == json.loads(rb)["error"] == ""
                cbody = json.dumps(c.consumer_body("both", f"c{attempt}", last_messages=3))
                ra, rb = await asyncio.gather(
                    handle_consumer_create(a.ctx, cbody.encode()),
                    handle_consumer_create(b.ctx, cbody.encode()),
                )
                assert b'"error":""' in ra, ra
                assert b'"error":""' in rb, rb
            producers = await _rows(c, "producers", "both")
            consumers = await _rows(c, "consumers", "both")
            assert sorted(r["name"] for r in producers) == [f"p{i}" for i in range(5)]
            assert sorted(r["name"] for r in consumers) == [f"c{i}" for i in range(5)]

    with EmbeddedBroker(store_dir=tmp_path, control_plane=False) as broker:
        asyncio.run(main(broker))


def test_two_instances_share_one_state(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What one instance changes, the other acts on at once: no instance caches state."""
    caplog.set_level(logging.DEBUG, logger="memphis_broker.control")

    async def main(broker: EmbeddedBroker) -> None:
        async with _two_instances(broker) as (a, b, c):
            # Created on a, destroyed on b, re-created on a with 3 partitions: b's producer
            # create must see the new station, and a's the missing one after b destroys it.
            assert await handle_station_create(a.ctx, _encode(c.station_body("flip"))) == b""
            assert await handle_station_create(b.ctx, _encode(c.station_body("flip"))) == b""
            destroy = json.dumps({"station_name": "flip", "username": "root"}).encode()
            assert await handle_station_destroy(b.ctx, destroy) == b""
            three = _encode(c.station_body("flip", partitions_number=3))
            assert await handle_station_create(a.ctx, three) == b""
            reply = json.loads(
                await handle_producer_create(b.ctx, _encode(c.producer_body("flip", "p")))
            )
            assert reply["partitions_update"]["partitions_list"] == [1, 2, 3]
            assert await handle_station_destroy(a.ctx, destroy) == b""
            assert await handle_station_destroy(b.ctx, destroy) == b"Station  does not exist"
            assert not await _rows(c, "producers", "flip")

            # Requests through NATS: the queue groups spread them over both instances, and
            # every one is served exactly once (one row per producer).
            assert await c.create_station("spread") == ""
            replies = await asyncio.gather(
                *(c.create_producer("spread", f"p{i}") for i in range(40))
            )
            assert all(r["error"] == "" for r in replies)
            assert len(await _rows(c, "producers", "spread")) == 40

            def served_by(name: str) -> int:
                return sum(
                    f"[{name}] $memphis_producer_creations station='spread'" in r.getMessage()
                    for r in caplog.records
                )

            await poll(lambda: _async(served_by("cp-a") + served_by("cp-b") == 40), timeout=15)
            assert served_by("cp-a") > 0
            assert served_by("cp-b") > 0

    with EmbeddedBroker(store_dir=tmp_path, control_plane=False) as broker:
        asyncio.run(main(broker))


async def _async(value: bool) -> bool:
    return value
