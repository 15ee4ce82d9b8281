"""Helpers for the interop tests: the two asyncio peers and what they read from the streams.

memphis-py and nats-py are asyncio libraries; every test runs them with ``asyncio.run`` around a
body coroutine (``run_memphis_py`` / ``run_nats``), while our blocking SDK (``memphis_sync``)
keeps its own I/O thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import memphis as memphis_py
import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from memphis_broker import EmbeddedBroker
from memphis_core.memphis._names import internal_name
from tests.support.names import TOKEN, USER
from tests.support.waits import poll

__all__ = [
    "StoredMessage",
    "consumer_info",
    "produced_headers",
    "run_memphis_py",
    "run_nats",
    "sdk_consumer",
    "stream_exists",
    "stream_messages",
    "stream_of",
    "wait_acked",
]

T = TypeVar("T")


def sdk_consumer(sdk: Any, station: str) -> Any:
    """Create ``station`` and a consumer ``sdk-c`` on it with our blocking SDK (a fetch waits at
    most 1 s)."""
    sdk.create_station(station)
    return sdk.create_consumer(station, "sdk-c", batch_max_wait_time=1.0)


def produced_headers(
    conn_id: str, msg_id: str | None = None, user: dict[str, str] | None = None
) -> dict[str, str]:
    """The headers of a message our producer ``sdk-p`` sent on connection ``conn_id``: the
    ``user`` headers, the Memphis pair and, with a ``msg_id``, its two id headers
    (docs/protocol.md §6.5)."""
    headers = {**(user or {}), "$memphis_connectionId": conn_id, "$memphis_producedBy": "sdk-p"}
    if msg_id is not None:
        headers.update({"msg-id": msg_id, "Nats-Msg-Id": msg_id})
    return headers


def stream_of(station: str, partition: int = 1) -> str:
    """The JetStream stream of one station partition: ``<internal>$<p>``."""
    return f"{internal_name(station)}${partition}"


def run_memphis_py(
    broker: EmbeddedBroker, body: Callable[[Any, JetStreamContext], Awaitable[T]]
) -> T:
    """Run ``body(memphis, js)`` in a fresh event loop.

    ``memphis`` is a connected ``memphis.Memphis`` (memphis-py 1.3.1); ``js`` is an independent
    nats-py JetStream context used as an observer of the broker. The host is ``127.0.0.1``, never
    ``localhost`` (memphis-py sleeps 1 s on "localhost": memphis-py 1.3.1's known defects (README,
    Features)).
    """

    async def main() -> T:
        client = memphis_py.Memphis()
        await client.connect(
            host=broker.host, port=broker.port, username=USER, connection_token=TOKEN
        )
        nc = await nats.connect(**broker.connect_options())
        try:
            return await body(client, nc.jetstream())
        finally:
            await nc.close()
            await client.close()

    return asyncio.run(main())


def run_nats(broker: EmbeddedBroker, body: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run ``body(js)`` with a plain nats-py connection to the broker, in a fresh event loop."""

    async def main() -> T:
        nc = await nats.connect(**broker.connect_options())
        try:
            return await body(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


class StoredMessage:
    """A message as the stream stores it (read with ``STREAM.MSG.GET``)."""

    __slots__ = ("data", "headers", "seq", "subject")

    def __init__(self, seq: int, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.seq = seq
        self.subject = subject
        self.data = data
        self.headers = headers

    def __repr__(self) -> str:
        return f"StoredMessage(seq={self.seq}, subject={self.subject!r}, data={self.data!r})"


async def stream_exists(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        return False
    return True


async def stream_messages(js: JetStreamContext, stream: str) -> list[StoredMessage]:
    """Every message currently stored in ``stream``, in sequence order."""
    state = (await js.stream_info(stream)).state
    out: list[StoredMessage] = []
    if state.messages == 0:
        return out
    for seq in range(state.first_seq, state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        out.append(StoredMessage(seq, raw.subject or "", raw.data or b"", dict(raw.headers or {})))
    return out


async def consumer_info(js: JetStreamContext, stream: str, durable: str) -> Any:
    return await js.consumer_info(stream, durable)


async def wait_acked(
    js: JetStreamContext, stream: str, durable: str, last_seq: int, what: str
) -> None:
    """Wait until ``durable`` on ``stream`` has no ack pending and its ack floor is ``last_seq``:
    every message up to it acked, as the server counts."""

    async def acked() -> bool:
        ci = await js.consumer_info(stream, durable)
        return bool(ci.num_ack_pending == 0 and ci.ack_floor.stream_seq == last_seq)

    await poll(acked, what=what)
