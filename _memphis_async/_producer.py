"""Async producers (shared by memphis_trio and memphis_asyncio)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from memphis_core import (
    Headers,
    MemphisError,
    Operation,
    ProducerState,
    PubAck,
    RequestTimeoutError,
    produce_options,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._driver import Driver

__all__ = ["Producer"]


class Producer:
    """A registered producer. Any number of tasks may produce on it concurrently."""

    def __init__(self, driver: Driver, state: ProducerState) -> None:
        self._driver = driver
        self._state = state

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def station_name(self) -> str:
        return self._state.station_name

    async def produce(
        self,
        message: object,
        *,
        ack_wait: float = 15.0,
        headers: Mapping[str, str] | Headers | None = None,
        async_produce: bool = False,
        msg_id: str | None = None,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> PubAck | None:
        """Produce one message.

        Synchronous (the default): returns once the station stored it, with its PubAck.
        ``async_produce=True``: returns at once; at most ``window`` produces are in flight, beyond
        that this call waits until acknowledgements come back. ``flush()`` waits for all of
        them and raises the first failure.

        Cancelling a synchronous produce only stops the wait: the message may still be stored
        (use ``msg_id`` to make a retry safe), and the connection stays usable.

        Raises:
            MemphisSchemaError: the message does not fit the station's schema (nothing sent).
            MemphisHeaderError: a header key starts with ``$memphis`` or is malformed.
            LocalProtocolError: bad options (both partition key and number, empty msg_id...).
            MemphisError: the broker refused the message, or no ack within ``ack_wait``.
        """
        opts = produce_options(
            ack_wait=ack_wait,
            headers=headers,
            async_produce=async_produce,
            msg_id=msg_id,
            partition_key=partition_key,
            partition_number=partition_number,
        )
        state = self._state
        driver = self._driver
        client = driver.client
        if async_produce:
            if state.window_full:
                # Half the window must drain before we go on (the core's policy, shared with
                # the other frontends): waking at one free slot would wake per ack.
                driver.kick()
                await driver.wait_for(lambda: state.window_drained)
            # No checkpoint on the fast path: a burst of async produces piles up in the core and
            # the pump writes it as one chunk when this task next yields.
            driver.call(lambda now: client.produce(state, message, opts, now))
            return None
        op: Operation[PubAck | None] = driver.call(
            lambda now: client.produce(state, message, opts, now)
        )
        return await driver.wait(op)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every async produce is acknowledged; raise the first failure, if any.

        Raises:
            MemphisError: the first async produce that failed since the last flush.
            RequestTimeoutError: ``timeout`` passed first.
        """
        state = self._state
        self._driver.kick()
        if not await self._driver.wait_for(lambda: state.in_flight == 0, timeout):
            raise RequestTimeoutError("memphis: timeout waiting for async produces")
        error, state.first_error = state.first_error, None
        if error is not None:
            raise error

    async def destroy(self) -> None:
        """Unregister the producer (async produces in flight are flushed first).

        Raises:
            MemphisError: the broker refused.
        """
        # Destroying is what the caller wants; earlier async failures were theirs to flush.
        with contextlib.suppress(MemphisError):
            await self.flush()
        client = self._driver.client
        await self._driver.run(lambda now: client.destroy_producer(self._state, now))

    def __repr__(self) -> str:
        return f"<Producer {self.name!r} station={self.station_name!r}>"
