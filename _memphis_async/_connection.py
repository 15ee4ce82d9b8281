"""``connect`` and the async Connection / Station classes (shared by memphis_trio and
memphis_asyncio; each frontend binds :func:`make_connect` to its backend).

``connect(...)`` returns a :class:`Connecting`, usable two ways:

* ``async with connect(...) as conn:`` — structured: the connection's tasks (the reader, the
  pump, consume loops, error-handler calls) live in a task group owned by the block (a trio
  nursery); leaving the block closes the connection and waits for them.
* ``conn = await connect(...)`` — the tasks are spawned on the loop itself (trio: as system
  tasks) and live until ``await conn.close()``. ``async with conn:`` closes it too.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from memphis_core import (
    TLS,
    Client,
    ConnectOptions,
    ConsumerError,
    ConsumerOptions,
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
from ._driver import CLOSE_TIMEOUT, Driver
from ._producer import Producer

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from memphis_core import Headers

    from ._backend import Backend, Spawner

__all__ = ["ConnectFunction", "Connecting", "Connection", "Station", "make_connect"]


class Connecting:
    """What ``connect(...)`` returns: ``await`` it, or ``async with`` it."""

    def __init__(self, backend: Backend, options: ConnectOptions) -> None:
        self._backend = backend
        self._options = options
        self._group: Any = None
        self._connection: Connection | None = None

    async def _open(self, spawner: Spawner) -> Connection:
        driver = Driver(Client(self._options), self._backend, spawner)
        await driver.start()
        return Connection(driver)

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open(self._backend.background_spawner()).__await__()

    async def __aenter__(self) -> Connection:
        group = self._backend.open_task_group()
        spawner = await group.__aenter__()
        try:
            self._connection = await self._open(spawner)
        except BaseException:
            await group.__aexit__(None, None, None)
            raise
        self._group = group
        return self._connection

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._connection is not None:
                await self._connection.close()
        finally:
            # The block's own exception is not handed to the group: our tasks are stopped by
            # now, and a nursery would wrap it in an ExceptionGroup.
            try:
                await self._group.__aexit__(None, None, None)
            except BaseException as group_error:
                # A cancellation of our own tasks must not replace the block's exception (the
                # caller's cancellation is delivered again at its next checkpoint).
                if e is None or not self._backend.only_cancellations(group_error):
                    raise


class ConnectFunction(Protocol):
    """The signature of ``memphis_trio.connect`` / ``memphis_asyncio.connect``."""

    def __call__(
        self,
        host: str | Sequence[str],
        username: str,
        *,
        connection_token: str | None = ...,
        password: str | None = ...,
        account_id: int = ...,
        port: int = ...,
        reconnect: bool = ...,
        max_reconnect: int = ...,
        reconnect_interval: float = ...,
        timeout: float = ...,
        tls: TLS | None = ...,
        ignore_discovered_servers: bool = ...,
    ) -> Connecting: ...


def make_connect(backend: Backend) -> ConnectFunction:
    """``connect`` for one backend (the frontends' only glue besides the backend itself)."""

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
    ) -> Connecting:
        """Connect to a Memphis broker: ``async with connect(...) as conn`` or
        ``conn = await connect(...)``.

        ``host`` is one server or several, as a list or comma-separated (``"h1:4222,h2:4222"``,
        ``nats://`` / ``tls://`` prefixes accepted, ``port`` where none is given); the servers a
        cluster advertises are added unless ``ignore_discovered_servers`` (docs/cluster-client.md).
        Exactly one of ``connection_token`` / ``password`` is required. Reconnects are automatic:
        a lost server is tried last, another is dialled at once, one server again only after
        ``reconnect_interval`` seconds; ``max_reconnect`` consecutive failed attempts end the
        connection (-1 = forever).

        Raises:
            LocalProtocolError: bad arguments, at once (nothing is dialled).
            MemphisConnectError: on ``await`` / entering: the broker is unreachable or refused
                the credentials.
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
        return Connecting(backend, options)

    return connect


class Connection:
    """A connection to a Memphis broker. Use it from the event loop that opened it."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._client = driver.client
        # Consumers that may run a consume loop, stopped on close(). Weak, so a consumer the
        # caller dropped is not kept alive by the connection; errors route via state.handle.
        self._consumers: weakref.WeakSet[Consumer] = weakref.WeakSet()
        driver.on_consumer_error = self._route_consumer_error

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected and not self._driver.closed

    @property
    def connection_id(self) -> str:
        return self._client.connection_id

    async def close(self) -> None:
        """Close the connection (consume loops first). Also completes when cancelled."""
        # One shielded unit: with asyncio a cancelled caller returns at once while the shielded
        # work goes on, so a second step after the first would never run.
        await self._driver.backend.shielded(self._close_all, 2 * CLOSE_TIMEOUT)
        self._driver.cancel_tasks()  # whatever outlived the timeout

    async def _close_all(self) -> None:
        await self._stop_consumers()
        await self._driver.aclose()

    async def _stop_consumers(self) -> None:
        for consumer in list(self._consumers):
            await consumer.stop_consume()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _route_consumer_error(self, event: ConsumerError) -> None:
        consumer = event.consumer.handle
        if isinstance(consumer, Consumer):
            # Not on the reader's or pump's time: the handler is user code and may be slow.
            async def report() -> None:
                await consumer._report_error(event.error)

            self._driver.spawn(report, "memphis-error-handler")

    # ------------------------------------------------------------------ stations

    async def create_station(
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
        await self._driver.run(lambda now: self._client.create_station(opts, now))
        return Station(self, name)

    async def destroy_station(self, name: str) -> None:
        await self._driver.run(lambda now: self._client.destroy_station(name, now))

    # ------------------------------------------------------------------ schemas

    async def create_schema(
        self, name: str, schema_type: SchemaType | str, path: str | os.PathLike[str]
    ) -> None:
        """Create a schema from a file (an identical existing schema counts as success).

        Raises:
            LocalProtocolError: bad name or type; OSError: unreadable file.
            MemphisError: the broker found the schema invalid.
        """
        # A small local file, read once per schema: not worth a worker thread.
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
        await self._driver.run(
            lambda now: self._client.create_schema(name, schema_type, content, now)
        )

    async def enforce_schema(self, name: str, station_name: str) -> None:
        await self._driver.run(lambda now: self._client.enforce_schema(name, station_name, now))

    async def attach_schema(self, name: str, station_name: str) -> None:
        """Deprecated alias of :meth:`enforce_schema`."""
        warnings.warn(
            "attach_schema is deprecated, use enforce_schema", DeprecationWarning, stacklevel=2
        )
        await self.enforce_schema(name, station_name)

    async def detach_schema(self, station_name: str) -> None:
        await self._driver.run(lambda now: self._client.detach_schema(station_name, now))

    # ------------------------------------------------------------------ producers

    async def create_producer(self, station_name: str, producer_name: str) -> Producer:
        """Register a producer (the station is created if it does not exist)."""
        opts = producer_options(station_name, producer_name)
        state = await self._driver.run(lambda now: self._client.create_producer(opts, now))
        return Producer(self._driver, state)

    async def produce(
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
        producer = await self.create_producer(station_name, producer_name)
        return await producer.produce(
            message,
            ack_wait=ack_wait,
            headers=headers,
            async_produce=async_produce,
            msg_id=msg_id,
            partition_key=partition_key,
            partition_number=partition_number,
        )

    # ------------------------------------------------------------------ consumers

    async def create_consumer(
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

        ``error_handler(consumer, error)`` (a coroutine function, or a plain callable) hears
        about failures outside any call, e.g. ``station unreachable``.

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
        return await self._consumer(opts, error_handler)

    async def _consumer(
        self, opts: ConsumerOptions, error_handler: ErrorHandler | None
    ) -> Consumer:
        state = await self._driver.run(lambda now: self._client.create_consumer(opts, now))
        consumer = state.handle
        if isinstance(consumer, Consumer):  # cached by the core: same consumer, newest handler
            if error_handler is not None:
                consumer._set_error_handler(error_handler)
            return consumer
        consumer = Consumer(self._driver, state, error_handler)
        state.handle = consumer
        self._consumers.add(consumer)
        return consumer

    async def fetch_messages(
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
        consumer = await self._consumer(opts, error_handler)
        return await consumer.fetch(
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

    async def create_producer(self, producer_name: str) -> Producer:
        return await self._connection.create_producer(self.name, producer_name)

    async def create_consumer(self, consumer_name: str, **options: Any) -> Consumer:
        return await self._connection.create_consumer(self.name, consumer_name, **options)

    async def destroy(self) -> None:
        """Destroy the station: its streams, consumers and dead letters go with it."""
        await self._connection.destroy_station(self.name)

    def __repr__(self) -> str:
        return f"<Station {self.name!r}>"
