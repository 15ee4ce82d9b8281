"""A nats-py client that speaks the broker's control plane as a Memphis SDK would."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from memphis_broker import EmbeddedBroker
from memphis_broker._jsapi import JSApi
from memphis_broker._store import Bucket
from tests.support.waits import poll


class Client:
    """A nats-py connection named like a Memphis SDK (``<connId>::<username>``)."""

    def __init__(self, nc: NATS, conn_id: str, username: str = "root") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.api = JSApi(nc)
        self.conn_id = conn_id
        self.username = username

    async def request(self, subject: str, body: object, timeout: float = 10.0) -> bytes:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        msg = await self.nc.request(subject, payload, timeout=timeout)
        return msg.data

    async def text(self, subject: str, body: object) -> str:
        return (await self.request(subject, body)).decode()

    async def json(self, subject: str, body: object) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(await self.request(subject, body))
        return doc

    async def create_station(self, name: str, /, **fields: Any) -> str:
        return await self.text("$memphis_station_creations", self.station_body(name, **fields))

    def station_body(self, name: str, /, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "retention_type": "message_age_sec",
            "retention_value": 3600,
            "storage_type": "file",
            "replicas": 1,
            "idempotency_window_in_ms": 120000,
            "schema_name": "",
            "dls_configuration": {"poison": True, "schemaverse": True},
            "username": self.username,
            "tiered_storage_enabled": False,
            "partitions_number": 1,
            "dls_station": "",
        }
        body.update(fields)
        return body

    async def create_producer(self, station: str, name: str, /, **fields: Any) -> dict[str, Any]:
        body = self.producer_body(station, name, **fields)
        return await self.json("$memphis_producer_creations", body)

    def producer_body(self, station: str, name: str, /, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "station_name": station,
            "connection_id": self.conn_id,
            "producer_type": "application",
            "req_version": 4,
            "username": self.username,
            "app_id": "app-1",
            "sdk_lang": "python",
        }
        body.update(fields)
        return body

    def consumer_body(self, station: str, name: str, /, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "station_name": station,
            "connection_id": self.conn_id,
            "consumer_type": "application",
            "consumers_group": "",
            "max_ack_time_ms": 30000,
            "max_msg_deliveries": 2,
            "username": self.username,
            "start_consume_from_sequence": 1,
            "last_messages": -1,
            "req_version": 4,
            "app_id": "app-1",
            "sdk_lang": "python",
        }
        body.update(fields)
        return body

    async def create_consumer(self, station: str, name: str, /, **fields: Any) -> str:
        return await self.text(
            "$memphis_consumer_creations", self.consumer_body(station, name, **fields)
        )

    async def destroy(self, kind: str, station: str, name: str, /, **fields: Any) -> str:
        body: dict[str, Any] = {
            "station_name": station,
            "name": name,
            "username": self.username,
            "connection_id": self.conn_id,
            "req_version": 1,
        }
        body.update(fields)
        return await self.text(f"$memphis_{kind}_destructions", body)

    async def rows(self, bucket: str) -> list[dict[str, Any]]:
        """Every live document of a control-plane bucket (to check stored state)."""
        kv = await self.js.key_value(f"memphis_{bucket}")
        docs = await Bucket(kv, f"memphis_{bucket}", self.api).scan()
        return [doc for k, doc in docs if k != "seq" and not k.startswith("i.")]


async def connect(broker: EmbeddedBroker, username: str = "root", **extra: Any) -> Client:
    conn_id = str(uuid.uuid4())
    opts = broker.connect_options(username)
    opts.update(extra)
    nc = await nats.connect(name=f"{conn_id}::{username}", **opts)
    return Client(nc, conn_id, username)


Body = Callable[[Client], Awaitable[None]]


HEADERS = {"$memphis_producedBy": "prod1", "$memphis_connectionId": "conn-1", "k": "v"}


async def dls_rows(c: Client, station: str) -> list[dict[str, Any]]:
    return [r for r in await c.rows("dls") if r["station"] == station]


async def poison(c: Client, station: str, group: str, data: bytes) -> dict[str, Any]:
    """Publish ``data`` and never ack it until JetStream gives up (MaxDeliver=2)."""
    await c.create_consumer(
        station, group, consumers_group=group, max_msg_deliveries=2, max_ack_time_ms=100
    )
    ack = await c.js.publish(f"{station}$1.final", data, headers=HEADERS)
    sub = await c.js.pull_subscribe_bind(group, stream=f"{station}$1")

    async def stored() -> list[dict[str, Any]]:
        # Keep a pull request open so JetStream re-evaluates redelivery and, past MaxDeliver,
        # emits the MAX_DELIVERIES advisory.
        with contextlib.suppress(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.3)
        return [r for r in await dls_rows(c, station) if r["message_seq"] == ack.seq]

    rows: list[dict[str, Any]] = await poll(stored, timeout=30, interval=0)
    (row,) = rows
    return row
