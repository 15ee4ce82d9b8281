"""``memphis_sync.connect`` and the blocking Connection / Station classes."""

from __future__ import annotations

import os
import warnings
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memphis_core import (
    TLS,
    Client,
    ConsumerError,
    LocalProtocolError,
    PubAck,
    RetentionType,
    SchemaType,
    StorageType,
    connect_options,
    consumer_options,
    fetch_consumer_options,
    producer_options,
    station_options,
)

from ._consumer import Consumer, ErrorHandler, Message
from ._driver import Driver
from ._producer import Producer

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from memphis_core import Headers

__all__ = ["Connection", "Station", "connect"]


def connect(
    host: str | Sequence[str],
    username: str,
    *,
    connection_token: str | None = None,
    password: str | None = None,
    account_id: int = 1,
    port: int = 6666,
    reconnect: bool = True,
    max_reconnect: int = 10,
    reconnect_interval: float = 1.0,
    timeout: float = 15.0,
    tls: TLS | None = None,
    ignore_discovered_servers: bool = False,
) -> Connection:
    """Connect to a Memphis broker; use as ``with memphis.connect(...) as conn:``.

    ``host`` is one server or several, as a list or comma-separated (``"h1:4222,h2:4222"``,
    ``nats://`` / ``tls://`` prefixes accepted, ``port`` where none is given); the servers a
    cluster advertises are added unless ``ignore_discovered_servers`` (docs/cluster-client.md).
    Exactly one of ``connection_token`` / ``password`` is required. Reconnects are automatic:
    a lost server is tried last, another is dialled at once, one server again only after
    ``reconnect_interval`` seconds; ``max_reconnect`` consecutive failed attempts end the
    connection (-1 = forever).

    Raises:
        LocalProtocolError: bad arguments (nothing is dialled).
        MemphisConnectError: the broker is unreachable or refused the credentials.
    """
    options = connect_options(
        host,
        username,
        connection_token=connection_token,
        password=password,
        account_id=account_id,
        port=port,
        reconnect=reconnect,
        max_reconnect=max_reconnect,
        reconnect_interval=reconnect_interval,
        timeout=timeout,
        tls=tls,
        ignore_discovered_servers=ignore_discovered_servers,
    )
    driver = Driver(Client(options))
    driver.start()
    return Connection(driver)


class Connection:
    """A connection to a Memphis broker. Thread-safe."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._client = driver.client
        # Consumers that may run a consume thread: stopped on close(). Weak, so a consumer the
        # caller dropped is not kept alive by the connection.
        self._consumers: weakref.WeakSet[Consumer] = weakref.WeakSet()
        driver.on_consumer_error = self._route_consumer_error

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected and not self._driver.closed

    @property
    def connection_id(self) -> str:
        return self._client.connection_id

    def close(self) -> None:
        """Close the connection. Producers and consumers become inactive on the broker."""
        for consumer in list(self._consumers):
            # Bounded: a handler stuck in user code must not keep close() from closing.
            consumer._stop_consume(self._client.options.timeout)
        self._driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, start: Any) -> Any:
        driver = self._driver
        return driver.wait(driver.call(start))

    @staticmethod
    def _route_consumer_error(event: ConsumerError) -> None:
        consumer = event.consumer.handle
        if isinstance(consumer, Consumer):
            consumer._report_error(event.error)

    # ------------------------------------------------------------------ stations

    def create_station(
        self,
        name: str,
        *,
        retention_type: RetentionType | str = RetentionType.MAX_MESSAGE_AGE_SECONDS,
        retention_value: int = 3600,
        storage_type: StorageType | str = StorageType.DISK,
        replicas: int = 1,
        idempotency_window: float = 120.0,
        schema_name: str = "",
        send_poison_msg_to_dls: bool = True,
        send_schema_failed_msg_to_dls: bool = True,
        tiered_storage_enabled: bool = False,
        partitions_number: int = 1,
        dls_station: str = "",
    ) -> Station:
        """Create a station, or return the existing one unchanged.

        Raises:
            LocalProtocolError: an invalid option (nothing is sent).
            MemphisError: the broker refused.
        """
        opts = station_options(
            name,
            retention_type=retention_type,
            retention_value=retention_value,
            storage_type=storage_type,
            replicas=replicas,
            idempotency_window=idempotency_window,
            schema_name=schema_name,
            send_poison_msg_to_dls=send_poison_msg_to_dls,
            send_schema_failed_msg_to_dls=send_schema_failed_msg_to_dls,
            tiered_storage_enabled=tiered_storage_enabled,
            partitions_number=partitions_number,
            dls_station=dls_station,
        )
        self._run(lambda now: self._client.create_station(opts, now))
        return Station(self, name)

    def destroy_station(self, name: str) -> None:
        self._run(lambda now: self._client.destroy_station(name, now))

    # ------------------------------------------------------------------ schemas

    def create_schema(
        self, name: str, schema_type: SchemaType | str, path: str | os.PathLike[str]
    ) -> None:
        """Create a schema from a file (an identical existing schema counts as success).

        Raises:
            LocalProtocolError: bad name or type; OSError: unreadable file.
            MemphisError: the broker found the schema invalid.
        """
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
        self._run(lambda now: self._client.create_schema(name, schema_type, content, now))

    def enforce_schema(self, name: str, station_name: str) -> None:
        self._run(lambda now: self._client.enforce_schema(name, station_name, now))

    def attach_schema(self, name: str, station_name: str) -> None:
        """Deprecated alias of :meth:`enforce_schema`."""
        warnings.warn(
            "attach_schema is deprecated, use enforce_schema", DeprecationWarning, stacklevel=2
        )
        self.enforce_schema(name, station_name)

    def detach_schema(self, station_name: str) -> None:
        self._run(lambda now: self._client.detach_schema(station_name, now))

    # ------------------------------------------------------------------ producers

    def create_producer(self, station_name: str, producer_name: str) -> Producer:
        """Register a producer (the station is created if it does not exist)."""
        opts = producer_options(station_name, producer_name)
        state = self._run(lambda now: self._client.create_producer(opts, now))
        return Producer(self._driver, state)

    def produce(
        self,
        station_name: str,
        producer_name: str,
        message: object,
        *,
        ack_wait: float = 15.0,
        headers: Mapping[str, str] | Headers | None = None,
        async_produce: bool = False,
        msg_id: str | None = None,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> PubAck | None:
        """Produce without keeping a producer around (one is created and cached on first use)."""
        producer = self.create_producer(station_name, producer_name)
        return producer.produce(
            message,
            ack_wait=ack_wait,
            headers=headers,
            async_produce=async_produce,
            msg_id=msg_id,
            partition_key=partition_key,
            partition_number=partition_number,
        )

    # ------------------------------------------------------------------ consumers

    def create_consumer(
        self,
        station_name: str,
        consumer_name: str,
        *,
        consumer_group: str = "",
        pull_interval: float = 1.0,
        batch_size: int = 10,
        batch_max_wait_time: float = 5.0,
        max_ack_time: float = 30.0,
        max_msg_deliveries: int = 10,
        error_handler: ErrorHandler | None = None,
        start_consume_from_seq: int = 1,
        last_messages: int = -1,
    ) -> Consumer:
        """Register a consumer in ``consumer_group`` (default: its own name).

        Raises:
            LocalProtocolError: an invalid option (nothing is sent).
            MemphisError: the broker refused, or the group's durable is missing.
        """
        opts = consumer_options(
            station_name,
            consumer_name,
            consumer_group=consumer_group,
            pull_interval=pull_interval,
            batch_size=batch_size,
            batch_max_wait_time=batch_max_wait_time,
            max_ack_time=max_ack_time,
            max_msg_deliveries=max_msg_deliveries,
            start_consume_from_seq=start_consume_from_seq,
            last_messages=last_messages,
        )
        if error_handler is not None and not callable(error_handler):
            raise LocalProtocolError("error_handler must be callable")
        return self._consumer(opts, error_handler)

    def _consumer(self, opts: Any, error_handler: ErrorHandler | None) -> Consumer:
        state = self._run(lambda now: self._client.create_consumer(opts, now))
        consumer = state.handle
        if isinstance(consumer, Consumer):  # cached by the core: same consumer, newest handler
            if error_handler is not None:
                consumer._set_error_handler(error_handler)
            return consumer
        consumer = Consumer(self._driver, state, error_handler)
        state.handle = consumer
        self._consumers.add(consumer)
        return consumer

    def fetch_messages(
        self,
        station_name: str,
        consumer_name: str,
        *,
        consumer_group: str = "",
        batch_size: int = 10,
        batch_max_wait_time: float = 0.1,
        max_ack_time: float = 10.0,
        max_msg_deliveries: int = 2,
        error_handler: ErrorHandler | None = None,
        prefetch: bool = False,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> list[Message]:
        """Fetch without keeping a consumer around (the Go SDK's ``FetchMessages`` defaults)."""
        opts = fetch_consumer_options(
            station_name,
            consumer_name,
            consumer_group=consumer_group,
            batch_size=batch_size,
            batch_max_wait_time=batch_max_wait_time,
            max_ack_time=max_ack_time,
            max_msg_deliveries=max_msg_deliveries,
        )
        consumer = self._consumer(opts, error_handler)
        return consumer.fetch(
            batch_size,
            prefetch=prefetch,
            partition_key=partition_key,
            partition_number=partition_number,
        )

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        return f"<Connection {self._client.options.server} {state}>"


class Station:
    """A station handle: create producers and consumers on it, or destroy it."""

    def __init__(self, connection: Connection, name: str) -> None:
        self._connection = connection
        self.name = name

    def create_producer(self, producer_name: str) -> Producer:
        return self._connection.create_producer(self.name, producer_name)

    def create_consumer(self, consumer_name: str, **options: Any) -> Consumer:
        return self._connection.create_consumer(self.name, consumer_name, **options)

    def destroy(self) -> None:
        """Destroy the station: its streams, consumers and dead letters go with it."""
        self._connection.destroy_station(self.name)

    def __repr__(self) -> str:
        return f"<Station {self.name!r}>"
