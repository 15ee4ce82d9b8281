"""Dead-letter station (docs/protocol.md §9) with stock JetStream advisories."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import nats.errors
import pytest

from memphis_broker import EmbeddedBroker, admin_context, set_dls_configuration
from memphis_broker._dls import process_schemaverse, resend
from memphis_broker._store import key as store_key
from tests.support.control_client import HEADERS, Body, Client, dls_rows, poison
from tests.support.launcher import run_cli
from tests.support.waits import poll

Run = Callable[[Body], None]


async def _last_message(c: Client, stream: str) -> tuple[bytes, dict[str, str]]:
    async def get() -> Any:
        info = await c.api.stream_info(stream)
        return info and info["state"]["last_seq"]

    seq = await poll(get, timeout=15)
    got = await c.api.get_msg(stream, seq)
    assert got is not None
    return got[0], got[1]


def test_poison_message_to_dls_station_resend_and_pm_ack(
    broker: EmbeddedBroker, run: Run, name: str
) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, dls_station=f"{name}-dls") == ""
        row = await poison(c, name, "grp", b"poison!")
        assert row["poisoned_cgs"] == ["grp"]
        assert row["partition_number"] == 1
        assert row["message_type"] == "poison"
        assert row["producer_name"] == "prod1"
        assert bytes.fromhex(row["message_details"]["data"]) == b"poison!"
        assert row["message_details"]["headers"]["k"] == "v"

        # docs/protocol.md §9.6: a copy is produced into the linked dls_station
        data, headers = await _last_message(c, f"{name}-dls$1")
        assert data == b"poison!"
        assert headers["station"] == name
        assert headers["type"] == "unacked"
        assert headers["$memphis_producedBy"] == "prod1"

        # docs/protocol.md §9.5: resend to the SDK subject with the pm headers
        got: asyncio.Queue[Any] = asyncio.Queue()
        await c.nc.subscribe(f"$memphis_dls_{name}.grp", cb=got.put)
        await c.nc.flush()
        async with admin_context(broker.url, token="memphis") as ctx:
            assert await resend(ctx, name) == 1
        msg = await asyncio.wait_for(got.get(), 10)
        assert msg.data == b"poison!"
        assert msg.headers["$memphis_pm_id"] == str(row["id"])
        assert msg.headers["$memphis_pm_cg_name"] == "grp"
        assert msg.headers["$memphis_producedBy"] == "$memphis_dls"

        # pm-ack from the group removes the row
        await c.nc.publish(
            "$memphis_pm_acks", json.dumps({"id": row["id"], "cg_name": "grp"}).encode()
        )

        async def gone() -> bool:
            return not await dls_rows(c, name)

        await poll(gone, timeout=15)

    run(body)


def test_two_groups_share_one_row_and_destroy_drops_the_group(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        first = await poison(c, name, "g1", b"x")
        # a second group poisons the same message: merged into the same row
        await c.create_consumer(
            name, "g2", consumers_group="g2", max_msg_deliveries=1, max_ack_time_ms=100
        )
        sub = await c.js.pull_subscribe_bind("g2", stream=f"{name}$1")

        async def merged() -> Any:
            with contextlib.suppress(nats.errors.TimeoutError):
                await sub.fetch(1, timeout=0.3)
            rows = await dls_rows(c, name)
            return len(rows) == 1 and sorted(rows[0]["poisoned_cgs"]) == ["g1", "g2"] and rows

        (row,) = await poll(merged, timeout=30, interval=0)
        assert row["id"] == first["id"]
        assert await c.destroy("consumer", name, "g1") == ""
        (row,) = await dls_rows(c, name)
        assert row["poisoned_cgs"] == ["g2"]
        assert await c.destroy("consumer", name, "g2") == ""
        assert await dls_rows(c, name) == []

    run(body)


def test_explicit_dead_letter(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, partitions_number=2, dls_station=f"{name}-dls") == ""
        ack = await c.js.publish(f"{name}$2.final", b"bad order", headers=HEADERS)
        report = {
            "station_name": name,
            "error": "cannot parse",
            "cg_name": "Billing",  # as given by the SDK
            "seq": ack.seq,
            "partition": 2,
        }
        await c.nc.publish("$memphis_nacked_dls", json.dumps(report).encode())

        async def stored() -> list[dict[str, Any]]:
            return await dls_rows(c, name)

        (row,) = await poll(stored, timeout=15)
        assert row["validation_error"] == "cannot parse"
        assert row["poisoned_cgs"] == ["billing"]
        assert row["partition_number"] == 2
        data, headers = await _last_message(c, f"{name}-dls$1")
        assert (data, headers["type"], headers["station"]) == (b"bad order", "unacked", name)
        # the pm-ack names the group as given, too
        ack_body = {"id": row["id"], "cg_name": "BILLING"}
        await c.nc.publish("$memphis_pm_acks", json.dumps(ack_body).encode())

        async def gone() -> bool:
            return not await dls_rows(c, name)

        await poll(gone, timeout=15)

    run(body)


def test_poison_flag_off_ignores_reports(broker: EmbeddedBroker, run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        off, on = f"{name}-off", f"{name}-on"
        assert await c.create_station(off, dls_configuration={"poison": False}) == ""
        assert await c.create_station(on) == ""
        for st in (off, on):
            ack = await c.js.publish(f"{st}$1.final", b"m")
            report = {
                "station_name": st,
                "error": "e",
                "cg_name": "g",
                "seq": ack.seq,
                "partition": 1,
            }
            await c.nc.publish("$memphis_nacked_dls", json.dumps(report).encode())

        # Reports are processed in order from one work queue: once `on` is stored, `off` was seen.
        async def stored() -> list[dict[str, Any]]:
            return await dls_rows(c, on)

        await poll(stored, timeout=15)
        assert await dls_rows(c, off) == []

    run(body)


def test_schema_validation_failure(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name, dls_station=f"{name}-dls") == ""
        report = {
            "station_name": name,
            "producer": {"name": "prod9", "connection_id": c.conn_id},
            "message": {"data": b"{bad".hex(), "headers": {"h": "1"}},
            "validation_error": "missing field id",
        }
        await c.nc.publish("$memphis_schemaverse_dls", json.dumps(report).encode())

        async def stored() -> list[dict[str, Any]]:
            return await dls_rows(c, name)

        (row,) = await poll(stored, timeout=15)
        assert row["message_type"] == "schema"
        assert row["poisoned_cgs"] == []
        assert row["producer_name"] == "prod9"
        assert row["validation_error"] == "missing field id"
        data, headers = await _last_message(c, f"{name}-dls$1")
        assert (data, headers["type"], headers["h"]) == (b"{bad", "failed_schema", "1")

    run(body)


def test_redelivered_schema_failure_report_stores_one_row(
    broker: EmbeddedBroker, run: Run, name: str
) -> None:
    # A report whose processing failed after its row was stored is redelivered by the capture
    # stream (same sequence and timestamp): it must not store a second row. Two different
    # reports of the same bytes are two rows.
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        report = {
            "station_name": name,
            "producer": {"name": "prod9", "connection_id": c.conn_id},
            "message": {"data": b"{bad".hex(), "headers": {}},
            "validation_error": "missing field id",
        }
        payload = json.dumps(report).encode()
        async with admin_context(broker.url, token="memphis") as ctx:
            await process_schemaverse(ctx, payload, "41-1764000000_000001")
            await process_schemaverse(ctx, payload, "41-1764000000_000001")
            assert len(await dls_rows(c, name)) == 1
            await process_schemaverse(ctx, payload, "42-1764000000_000002")
            assert len(await dls_rows(c, name)) == 2
            # Through the capture stream, the control plane names the report itself.
            await c.nc.publish("$memphis_schemaverse_dls", payload)

            async def indexed() -> bool:
                keys = await ctx.store.dls.scan(f"i.{store_key(name)}.schema.*")
                return len(keys) == 3

            await poll(indexed, timeout=15)
            assert len(await dls_rows(c, name)) == 3

    run(body)


def test_set_dls_configuration_pushes_the_new_value(
    broker: EmbeddedBroker, run: Run, name: str
) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(f"A.{name}") == ""
        got: asyncio.Queue[Any] = asyncio.Queue()
        await c.nc.subscribe("$memphis_sdk_clients_updates", cb=got.put)
        await c.nc.flush()
        async with admin_context(broker.url, token="memphis") as ctx:
            assert await set_dls_configuration(ctx, f"a.{name}", schemaverse=False)
        msg = await asyncio.wait_for(got.get(), 10)
        # Quirk fixed (docs/protocol.md §4): the new value, not the previous one
        assert json.loads(msg.data) == {
            "station_name": f"a#{name}",
            "type": "schemaverse_to_dls",
            "update": False,
        }
        assert (await c.create_producer(f"a.{name}", "p"))["schemaverse_to_dls"] is False

    run(body)


async def _dls_cli(*args: str) -> str:
    """The stdout of ``memphis-broker dls *args``, which must succeed."""
    out = await asyncio.to_thread(run_cli, "dls", *args, timeout=60, check=True)
    return out.stdout


@pytest.mark.slow
def test_cli_dls_list_and_resend(broker: EmbeddedBroker, run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        row = await poison(c, name, "g", b"cli")
        conn = ["--nats-url", broker.url, "--token", "memphis", "--station", name]
        out = await _dls_cli("list", *conn)
        assert json.loads(out.splitlines()[0])["id"] == row["id"]
        got: asyncio.Queue[Any] = asyncio.Queue()
        await c.nc.subscribe(f"$memphis_dls_{name}_g", cb=got.put)  # legacy form too
        await c.nc.flush()
        out = await _dls_cli("resend", *conn, "--id", str(row["id"]))
        assert out.strip() == "resent 1 message(s)"
        assert (await asyncio.wait_for(got.get(), 10)).data == b"cli"

    run(body)


@pytest.mark.slow
def test_cli_dls_drop(broker: EmbeddedBroker, run: Run, name: str) -> None:
    """``dls drop`` deletes the selected rows without resending (the console's drop)."""

    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        kept = await poison(c, name, "g1", b"kept")
        dropped = await poison(c, name, "g2", b"dropped")
        out = await _dls_cli(
            *("drop", "--nats-url", broker.url, "--token", "memphis", "--station", name),
            *("--id", str(dropped["id"])),
        )
        assert out.strip() == "dropped 1 row(s)"
        assert [row["id"] for row in await dls_rows(c, name)] == [kept["id"]]

    run(body)
