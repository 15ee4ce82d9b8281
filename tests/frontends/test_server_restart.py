"""Reliability of the blocking client against the real broker: crashes, TLS, threads.

* kill -9 of nats-server under a running producer and consumer, restarted on the same port and
  store: the client reconnects by itself and resumes; with ``msg_id`` no acknowledged message is
  lost and none is stored twice; every produce that was in flight either completes or raises.
* mutual TLS with client-certificate verification, and a wrong CA failing clearly.
* several user threads producing on one connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from tests.support.natsserver import NatsServer


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path / "store") as running:
        yield running


def connect(broker: EmbeddedBroker, **kwargs: object) -> memphis.Connection:
    return memphis.connect(
        broker.host,
        "root",
        connection_token="memphis",
        port=broker.port,
        **kwargs,  # type: ignore[arg-type]
    )


def drain(consumer: memphis.Consumer) -> list[memphis.Message]:
    """Fetch until an empty batch, acking everything."""
    received: list[memphis.Message] = []
    while True:
        batch = consumer.fetch(500)
        if not batch:
            return received
        for message in batch:
            message.ack()
        received.extend(batch)


def test_kill_9_and_restart_loses_nothing_and_stores_nothing_twice(broker: EmbeddedBroker) -> None:
    total = 300
    conn = connect(broker, reconnect_interval=0.05, max_reconnect=-1)
    try:
        station = conn.create_station("crash-test", partitions_number=2)
        producer = station.create_producer("writer")
        consumer = station.create_consumer(
            "reader", batch_size=500, batch_max_wait_time=0.5, max_ack_time=30
        )
        produced = threading.Event()
        halfway = threading.Event()
        failures: list[BaseException] = []
        outcomes = {"completed": 0, "raised": 0}

        def produce_all() -> None:
            try:
                for i in range(total):
                    if i == total // 3:
                        halfway.set()
                    # The same msg_id on a retry: whatever reached the stream is not stored twice.
                    while True:
                        try:
                            producer.produce(
                                f"{i}".encode(),
                                msg_id=f"m-{i}",
                                partition_number=1 + i % 2,
                                ack_wait=2.0,
                            )
                            outcomes["completed"] += 1
                            break
                        except memphis.MemphisError:
                            outcomes["raised"] += 1
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
            finally:
                produced.set()

        writer = threading.Thread(target=produce_all)
        writer.start()
        assert halfway.wait(30)
        broker.restart_server(kill=True)
        assert produced.wait(120), "a produce hung across the restart"
        writer.join()
        assert not failures
        assert outcomes["completed"] == total
        assert conn.is_connected
        # Fetch from both partitions until both are empty.
        seen: list[int] = []
        for _ in range(4):
            seen.extend(int(m.data) for m in drain(consumer))
        assert sorted(seen) == list(range(total)), "lost or duplicated messages"
    finally:
        conn.close()


def test_consumer_resumes_after_restart(broker: EmbeddedBroker) -> None:
    conn = connect(broker, reconnect_interval=0.05, max_reconnect=-1)
    try:
        producer = conn.create_producer("resume", "p")
        consumer = conn.create_consumer("resume", "c", batch_max_wait_time=0.3)
        producer.produce(b"before", msg_id="before")
        assert [m.data for m in drain(consumer)] == [b"before"]
        broker.restart_server(kill=True)
        producer.produce(b"after", msg_id="after", ack_wait=5.0)
        assert [m.data for m in drain(consumer)] == [b"after"]
    finally:
        conn.close()


def test_threads_share_one_connection(broker: EmbeddedBroker) -> None:
    threads, each = 4, 200
    with connect(broker) as conn:
        producer = conn.create_producer("threads", "shared")
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(each):
                    if i % 2:
                        producer.produce(f"{n}-{i}", async_produce=True)
                    else:
                        producer.produce(f"{n}-{i}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        producer.flush()
        assert not errors
        consumer = conn.create_consumer("threads", "reader", batch_max_wait_time=0.3)
        got = sorted(m.data.decode() for m in drain(consumer))
        assert got == sorted(f"{n}-{i}" for n in range(threads) for i in range(each))


def test_close_fails_waiting_calls_instead_of_hanging(broker: EmbeddedBroker) -> None:
    conn = connect(broker)
    consumer = conn.create_consumer("closing", "c", batch_max_wait_time=5.0)
    result: list[BaseException | list[memphis.Message]] = []

    def fetch() -> None:
        try:
            result.append(consumer.fetch(1))
        except memphis.MemphisError as exc:
            result.append(exc)

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    started = time.monotonic()
    conn.close()
    fetcher.join(5)
    assert not fetcher.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(result[0], memphis.MemphisError)
    with pytest.raises(memphis.ConnectionClosedError):
        conn.create_producer("closing", "late")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    base = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("memphis-client")
    other_ca = trustme.CA()
    paths = {
        "ca": base / "ca.pem",
        "server_cert": base / "server.pem",
        "server_key": base / "server.key",
        "client_cert": base / "client.pem",
        "client_key": base / "client.key",
        "other_ca": base / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    return {name: str(path) for name, path in paths.items()}


def test_mutual_tls(tmp_path: Path, certificates: dict[str, str]) -> None:
    tls_files = (certificates["server_cert"], certificates["server_key"], certificates["ca"])
    with NatsServer(tmp_path, token="memphis", tls=tls_files) as server:
        good = memphis.TLS(
            certificates["client_cert"], certificates["client_key"], certificates["ca"]
        )
        with memphis.connect(
            "localhost", "root", connection_token="memphis", port=server.port, tls=good
        ) as conn:
            assert conn.is_connected
            # No control plane on this bare server: a control request must travel over TLS and
            # come back as "no responders", which proves the encrypted round trip works.
            with pytest.raises(memphis.MemphisError, match="no responders"):
                conn.create_station("tls-station")
        wrong_ca = memphis.TLS(
            certificates["client_cert"], certificates["client_key"], certificates["other_ca"]
        )
        with pytest.raises(memphis.MemphisConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            memphis.connect(
                "localhost",
                "root",
                connection_token="memphis",
                port=server.port,
                tls=wrong_ca,
                timeout=5,
            )
        no_client_cert = memphis.TLS("", "", "")  # all empty = no TLS at all
        with pytest.raises(memphis.MemphisConnectError, match="TLS"):
            memphis.connect(
                "localhost",
                "root",
                connection_token="memphis",
                port=server.port,
                tls=no_client_cert,
                timeout=5,
            )
