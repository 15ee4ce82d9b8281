"""Handler recorders and a broker probe, for the tests that run on all three frontends.

The probe looks at the broker's JetStream state with nats-py (streams, durable consumers, DLS
rows), independently of the client under test, so that "stored once", "went to partition 2" or
"ack_wait is 30 s" is checked on the broker and not taken from the client's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import nats
from nats.js.errors import NotFoundError

from memphis_broker import EmbeddedBroker, admin_context
from memphis_broker._dls import list_dls, resend
from memphis_broker._store import key as store_key
from memphis_core.memphis._names import internal_name

__all__ = ["BrokerProbe", "Recorder", "connections", "destroy_elsewhere", "orphaned_producer"]

T = TypeVar("T")


class Recorder:
    """Collects what handlers receive, from any thread, with waits on the collected state."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        with self._cond:
            self.calls.append(args)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[Any, ...]]], bool], timeout: float = 10.0
    ) -> list[tuple[Any, ...]]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.calls), timeout):
                raise AssertionError(f"handler calls never satisfied the condition: {self.calls}")
            return list(self.calls)


class BrokerProbe:
    """A view of the broker's JetStream state, on its own nats-py connection and loop.

    It only reads, except :meth:`limit_ack_pending`, which sets up a broker state that no client
    call can reach (the real broker, configured, not a mock).
    """

    def __init__(self, broker: EmbeddedBroker) -> None:
        self._broker = broker
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="broker-probe", daemon=True
        )
        self._thread.start()
        self._nc: Any = None
        self._admin: Any = None
        self._ctx: Any = None
        self._run(self._open())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(30)

    async def _open(self) -> None:
        self._nc = await nats.connect(**self._broker.connect_options())
        auth: dict[str, Any] = (
            {"token": self._broker.token}
            if self._broker.token
            else {"user": "root$1", "password": self._broker.root_password}
        )
        self._admin = admin_context(self._broker.url, **auth)
        self._ctx = await self._admin.__aenter__()

    def close(self) -> None:
        async def shut() -> None:
            await self._admin.__aexit__(None, None, None)
            await self._nc.close()

        try:
            self._run(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- JetStream -------------------------------------------------------------------------

    @staticmethod
    def stream(station: str, partition: int = 1) -> str:
        return f"{internal_name(station)}${partition}"

    def stream_config(self, station: str, partition: int = 1) -> Any:
        """nats-py's ``StreamConfig`` (durations in seconds), or ``None`` if there is no stream."""

        async def get() -> Any:
            try:
                info = await self._nc.jetstream().stream_info(self.stream(station, partition))
            except NotFoundError:
                return None
            return info.config

        return self._run(get())

    def stream_exists(self, station: str, partition: int = 1) -> bool:
        return self.stream_config(station, partition) is not None

    def message_count(self, station: str, partition: int = 1) -> int:
        async def get() -> int:
            info = await self._nc.jetstream().stream_info(self.stream(station, partition))
            return int(info.state.messages)

        return self._run(get())

    def stored(self, station: str, partition: int = 1) -> list[tuple[bytes, dict[str, str]]]:
        """Every message of one partition stream, oldest first: ``(data, headers)``."""

        async def get() -> list[tuple[bytes, dict[str, str]]]:
            js = self._nc.jetstream()
            name = self.stream(station, partition)
            info = await js.stream_info(name)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    raw = await js.get_msg(name, seq)
                except NotFoundError:
                    continue
                out.append((raw.data or b"", dict(raw.headers or {})))
            return out

        return self._run(get())

    def _consumer_info(self, station: str, group: str, partition: int) -> Any:
        """nats-py's ``ConsumerInfo`` of the durable; ``NotFoundError`` if it does not exist."""

        async def get() -> Any:
            return await self._nc.jetstream().consumer_info(
                self.stream(station, partition), internal_name(group)
            )

        return self._run(get())

    def consumer_config(self, station: str, group: str, partition: int = 1) -> Any:
        """nats-py's ``ConsumerConfig`` of the durable, or ``None`` if it does not exist."""
        try:
            return self._consumer_info(station, group, partition).config
        except NotFoundError:
            return None

    def ack_pending(self, station: str, group: str, partition: int = 1) -> int:
        """How many messages the durable delivered that are not acked yet."""
        return int(self._consumer_info(station, group, partition).num_ack_pending)

    def delivered(self, station: str, group: str, partition: int = 1) -> int:
        """How many deliveries the durable made, redeliveries included (JetStream's
        ``delivered.consumer_seq``): the number of messages when each was delivered once."""
        return int(self._consumer_info(station, group, partition).delivered.consumer_seq)

    def num_waiting(self, station: str, group: str, partition: int = 1) -> int:
        """How many pull requests the durable holds open, waiting for messages."""
        return int(self._consumer_info(station, group, partition).num_waiting)

    def limit_ack_pending(self, station: str, group: str, limit: int, partition: int = 1) -> None:
        """Set the durable's JetStream ``max_ack_pending``: the broker then delivers nothing more
        while ``limit`` messages are unacked, although its ack subjects still count what is
        pending. The one way to hold a pull open with messages delivered to it and more waiting.
        A pull asking for more than ``limit`` is refused (409), so keep batches at most that."""

        async def update() -> None:
            js = self._nc.jetstream()
            stream = self.stream(station, partition)
            info = await js.consumer_info(stream, internal_name(group))
            await js.add_consumer(stream, dataclasses.replace(info.config, max_ack_pending=limit))

        self._run(update())

    def ack_floor(self, station: str, group: str, partition: int = 1) -> int:
        """The durable's ack floor (stream sequence up to which everything is acked)."""

        async def get() -> int:
            info = await self._nc.jetstream().consumer_info(
                self.stream(station, partition), internal_name(group)
            )
            return int(info.ack_floor.stream_seq)

        return self._run(get())

    # -- control-plane state ---------------------------------------------------------------

    def dls_rows(self, station: str) -> list[dict[str, Any]]:
        """The station's DLS rows (poison, schema and dead-lettered messages), oldest first."""
        return self._run(list_dls(self._ctx, station))

    def resend_dls(self, station: str) -> int:
        """The operator's "resend" of a station's poison messages (broker docs/protocol.md §4)."""
        return self._run(resend(self._ctx, station))

    def producers(self, station: str) -> list[dict[str, Any]]:
        """The broker's producer rows of a station (one per registered producer)."""
        return self._rows(self._ctx.store.producers, station)

    def consumers(self, station: str) -> list[dict[str, Any]]:
        """The broker's consumer rows of a station (one per registered consumer)."""
        return self._rows(self._ctx.store.consumers, station)

    def _rows(self, bucket: Any, station: str) -> list[dict[str, Any]]:
        async def get() -> list[dict[str, Any]]:
            rows = await bucket.scan(f"{store_key(station.lower())}.>")
            return [row for _k, row in rows]

        return self._run(get())

    def station_doc(self, station: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self._run(self._ctx.station(station.lower()))
        return doc


@contextlib.contextmanager
def connections(
    memphis: Any, broker: EmbeddedBroker, username: str, **auth: Any
) -> Iterator[Callable[..., Any]]:
    """``connect(**overrides)`` to ``broker`` as ``username`` with ``auth`` (the credentials)
    filled in; every connection it opened is closed at the end."""
    opened: list[Any] = []

    def connect(**overrides: Any) -> Any:
        kwargs: dict[str, Any] = {**auth, "port": broker.port}
        kwargs.update(overrides)
        host = kwargs.pop("host", broker.host)
        conn = memphis.connect(host, kwargs.pop("username", username), **kwargs)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


def destroy_elsewhere(connect: Callable[..., Any], station: str) -> None:
    """Destroy ``station`` from a connection of its own that ``connect`` opens, behind the
    backs of the others: their producers' next produce finds no stream."""
    other = connect()
    other.destroy_station(station)
    other.close()


def orphaned_producer(connect: Callable[..., Any], station: str) -> tuple[Any, Any]:
    """A connection and its producer on ``station`` that has stored one message (``b"stored"``,
    position 1), after :func:`destroy_elsewhere`: its next produce finds no stream."""
    conn = connect()
    producer = conn.create_producer(station, "p")
    producer.produce(b"stored")
    destroy_elsewhere(connect, station)
    return conn, producer
