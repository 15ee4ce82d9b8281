"""Application users stay in their lane (docs/broker.md, "Permissions").

In user/password mode an application user may use the Memphis protocol (control requests,
produce, pull, ack, consumer info) but not the JetStream API's destructive calls nor the
control plane's key-value buckets; nats-server refuses those with a permissions violation.
Root keeps full rights.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from memphis_broker import EmbeddedBroker

APP = "app"
APP_PASSWORD = "app-secret"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    store: Path = tmp_path_factory.mktemp("app-user-broker")
    with EmbeddedBroker(store_dir=store, users={APP: APP_PASSWORD}) as b:
        yield b


class Session:
    """A nats-py connection that records the server's asynchronous errors (-ERR)."""

    def __init__(self, nc: Any, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def request(self, subject: str, body: dict[str, Any] | bytes = b"") -> bytes | None:
        """The reply, or None when nothing answered (a refused publish gets no reply)."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            msg = await self.nc.request(subject, payload, timeout=2)
        except nats.errors.TimeoutError:
            return None
        data: bytes = msg.data
        return data

    async def refused(self, subject: str, body: dict[str, Any] | bytes = b"") -> bool:
        """Publish ``subject`` and wait (bounded) for the server's permissions violation."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.nc.publish(subject, payload, reply=self.nc.new_inbox())
        await self.nc.flush()  # the -ERR comes before the flush's PONG
        return await self.reported(f'permissions violation for publish to "{subject.lower()}"')

    async def reported(self, text: str) -> bool:
        """Wait (bounded) until an asynchronous server error containing ``text`` arrived."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while not any(text in e for e in self.errors):
            if loop.time() > end:
                return False
            await asyncio.sleep(0.01)  # the error callback runs as its own task
        return True


async def session(broker: EmbeddedBroker, username: str) -> Session:
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err).lower())

    nc = await nats.connect(**broker.connect_options(username), error_cb=on_error)
    return Session(nc, errors)


def run(body: Any) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def create_station(name: str) -> dict[str, Any]:
    return {"name": name, "partitions_number": 1, "username": APP}


def test_an_application_user_cannot_delete_a_stream_but_root_can(broker: EmbeddedBroker) -> None:
    async def body() -> None:
        app = await session(broker, APP)
        root = await session(broker, "root")
        try:
            # The Memphis protocol works: the station is created on the app user's request.
            assert await app.request("$memphis_station_creations", create_station("orders")) == b""
            assert await app.refused("$JS.API.STREAM.DELETE.orders$1")
            for api in (
                "STREAM.PURGE.orders$1",
                "STREAM.MSG.GET.orders$1",
                "STREAM.UPDATE.orders$1",
                "STREAM.LIST",
                "CONSUMER.DELETE.orders$1.any",
            ):
                assert await app.refused(f"$JS.API.{api}", {"seq": 1})
            info = json.loads(await root.request("$JS.API.STREAM.INFO.orders$1") or b"{}")
            assert info["config"]["name"] == "orders$1"  # still there
            # Root keeps full rights.
            deleted = json.loads(await root.request("$JS.API.STREAM.DELETE.orders$1") or b"{}")
            assert deleted.get("success") is True
        finally:
            await app.nc.close()
            await root.nc.close()

    run(body)


def test_an_application_user_cannot_touch_the_control_planes_buckets(
    broker: EmbeddedBroker,
) -> None:
    async def body() -> None:
        app = await session(broker, APP)
        root = await session(broker, "root")
        try:
            forged = {"name": "forged", "partitions": [1]}
            assert await app.refused("$KV.memphis_stations.forged", forged)
            for api in (
                "STREAM.INFO.KV_memphis_stations",
                "STREAM.DELETE.KV_memphis_stations",
                "DIRECT.GET.KV_memphis_stations",
            ):
                assert await app.refused(f"$JS.API.{api}")
            # Nothing was written: root reads the bucket's subject and finds no such key.
            reply = await root.request(
                "$JS.API.STREAM.MSG.GET.KV_memphis_stations",
                {"last_by_subj": "$KV.memphis_stations.forged"},
            )
            assert json.loads(reply or b"{}")["error"]["err_code"] == 10037  # no message found
            # No app user may answer a control request in the control plane's place.
            await app.nc.subscribe("$memphis_station_creations", queue="steal")
            await app.nc.flush()
            assert await app.reported(
                'permissions violation for subscription to "$memphis_station_creations"'
            )
        finally:
            await app.nc.close()
            await root.nc.close()

    run(body)


def test_the_official_python_sdk_works_as_an_application_user(broker: EmbeddedBroker) -> None:
    """memphis-py 1.3.1 (nats-py underneath, the SDKs' subjects) produces, fetches and acks."""
    memphis_py = pytest.importorskip("memphis")

    async def body() -> None:
        client = memphis_py.Memphis()
        await client.connect(
            host=broker.host, port=broker.port, username=APP, password=APP_PASSWORD
        )
        try:
            producer = await client.producer(station_name="py-sdk", producer_name="p")
            for i in range(3):
                await producer.produce(bytearray(b"m%d" % i), msg_id=f"id-{i}")
            consumer = await client.consumer(
                station_name="py-sdk", consumer_name="c", batch_max_time_to_wait_ms=500
            )
            got: list[bytes] = []
            loop = asyncio.get_running_loop()
            end = loop.time() + 20
            while len(got) < 3 and loop.time() < end:
                for msg in await consumer.fetch(batch_size=10) or []:
                    got.append(bytes(msg.get_data()))
                    await msg.ack()
            assert got == [b"m0", b"m1", b"m2"]
        finally:
            await client.close()

    run(body)
