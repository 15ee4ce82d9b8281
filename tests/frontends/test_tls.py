"""The async driver's reconnect and TLS paths, on memphis_asyncio and memphis_trio.

* kill -9 of nats-server under a running producer, restarted on the same port and store: the
  pump redials by itself, every produce completes or raises, and with ``msg_id`` nothing is
  lost or stored twice; a consumer resumes.
* mutual TLS: the reader upgrades the stream after INFO; a wrong CA fails clearly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.names import TOKEN, USER
from tests.support.natsserver import NatsServer


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path / "store", token=TOKEN) as running:
        yield running


async def drain(consumer: Any) -> list[bytes]:
    received: list[bytes] = []
    while True:
        batch = await consumer.fetch(500)
        if not batch:
            return received
        for message in batch:
            await message.ack()
        received.extend(m.data for m in batch)


def test_kill_9_and_restart_loses_nothing(lib: Lib, own_broker: EmbeddedBroker) -> None:
    total = 200
    restarted = [False]

    async def body() -> None:
        async with lib.memphis.connect(
            own_broker.host,
            USER,
            connection_token=TOKEN,
            port=own_broker.port,
            reconnect_interval=0.05,
            max_reconnect=-1,
        ) as conn:
            producer = await conn.create_producer("crash-test", "writer")
            consumer = await conn.create_consumer(
                "crash-test", "reader", batch_size=500, batch_max_wait_time=0.5
            )
            halfway = lib.event()

            async def produce_all() -> None:
                for i in range(total):
                    if i == total // 3:
                        halfway.set()
                    while True:  # the same msg_id on a retry: never stored twice
                        try:
                            await producer.produce(f"{i}".encode(), msg_id=f"m-{i}", ack_wait=2.0)
                            break
                        except lib.memphis.MemphisError:
                            pass  # failed for sure or maybe: retry, dedup makes it safe

            async def crash() -> None:
                await lib.wait(halfway)
                # In a worker thread: the loop keeps running, produces are in flight.
                await lib.to_thread(lambda: own_broker.restart_server(kill=True))
                restarted[0] = True

            async with lib.fail_after(120):
                await lib.gather(produce_all, crash)
            assert conn.is_connected
            seen = [int(data) for data in await drain(consumer)]
            assert sorted(seen) == list(range(total)), "lost or duplicated messages"
            # The consumer resumes too.
            await producer.produce(b"after", msg_id="after")
            assert await drain(consumer) == [b"after"]

    lib.run(body)
    assert restarted[0]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    base = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("memphis-client")
    other_ca = trustme.CA()
    paths = {name: base / f"{name}.pem" for name in ("ca", "scert", "skey", "ccert", "ckey")}
    paths["other_ca"] = base / "other-ca.pem"
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["skey"]))
    server.cert_chain_pems[0].write_to_path(str(paths["scert"]))
    client.private_key_pem.write_to_path(str(paths["ckey"]))
    client.cert_chain_pems[0].write_to_path(str(paths["ccert"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    return {name: str(path) for name, path in paths.items()}


def test_mutual_tls(lib: Lib, tmp_path: Path, certificates: dict[str, str]) -> None:
    memphis = lib.memphis
    files = (certificates["scert"], certificates["skey"], certificates["ca"])
    with NatsServer(tmp_path, token=TOKEN, tls=files) as server:

        def connect(tls: Any) -> Any:
            return memphis.connect(
                "localhost", USER, connection_token=TOKEN, port=server.port, tls=tls, timeout=5
            )

        async def body() -> None:
            good = memphis.TLS(certificates["ccert"], certificates["ckey"], certificates["ca"])
            async with connect(good) as conn:
                assert conn.is_connected
                # No control plane on this bare server: the request travels over TLS and comes
                # back as "no responders", which proves the encrypted round trip.
                with pytest.raises(memphis.MemphisError, match="no responders"):
                    await conn.create_station("tls-station")
            wrong = memphis.TLS(
                certificates["ccert"], certificates["ckey"], certificates["other_ca"]
            )
            with pytest.raises(memphis.MemphisConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await connect(wrong)

        lib.run(body)
