"""Blocking producers."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

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

    from ._pump import Pump

__all__ = ["Producer"]

#: Async produces waiting for their PubAck at most; ``produce`` blocks beyond that
#: (backpressure: memory is bounded by the window, not by how fast the caller produces).
DEFAULT_WINDOW: Final = 4096
_DEFAULT_ACK_WAIT: Final = 15.0
_DEFAULTS: Final = {flag: produce_options(async_produce=flag) for flag in (False, True)}


class Producer:
    """A registered producer. Thread-safe: several threads may produce on one producer."""

    def __init__(self, pump: Pump, state: ProducerState, *, window: int = DEFAULT_WINDOW) -> None:
        self._pump = pump
        self._state = state
        self._window = window

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def station_name(self) -> str:
        return self._state.station_name

    def produce(
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
        that this call blocks until acknowledgements come back. ``flush()`` waits for all of
        them and raises the first failure.

        Raises:
            MemphisSchemaError: the message does not fit the station's schema (nothing sent).
            MemphisHeaderError: a header key starts with ``$memphis`` or is malformed.
            LocalProtocolError: bad options (both partition key and number, empty msg_id...).
            MemphisError: the broker refused the message, or no ack within ``ack_wait``.
        """
        if (
            headers is None
            and msg_id is None
            and partition_key is None
            and partition_number is None
            and ack_wait == _DEFAULT_ACK_WAIT
            and type(async_produce) is bool
        ):
            opts = _DEFAULTS[async_produce]  # the common case: nothing to validate
        else:
            opts = produce_options(
                ack_wait=ack_wait,
                headers=headers,
                async_produce=async_produce,
                msg_id=msg_id,
                partition_key=partition_key,
                partition_number=partition_number,
            )
        state = self._state
        pump = self._pump
        if async_produce:
            if state.in_flight >= self._window:
                # Full: wait for half the window to drain, not one slot. Waking per ack would
                # ping-pong between this thread and the I/O thread for every message.
                low = self._window // 2
                pump.send_soon()
                pump.wait_for(lambda: state.in_flight <= low)
            pump.call(lambda now: pump.client.produce(state, message, opts, now), send=False)
            pump.wake()
            return None
        op: Operation[PubAck | None] = pump.call(
            lambda now: pump.client.produce(state, message, opts, now)
        )
        return pump.wait(op)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every async produce is acknowledged; raise the first failure, if any.

        Raises:
            MemphisError: the first async produce that failed since the last flush.
            RequestTimeoutError: ``timeout`` passed first.
        """
        state = self._state
        self._pump.send_soon()
        if not self._pump.wait_for(lambda: state.in_flight == 0, timeout):
            raise RequestTimeoutError("memphis: timeout waiting for async produces")
        with self._pump.lock:
            error, state.first_error = state.first_error, None
        if error is not None:
            raise error

    def destroy(self) -> None:
        """Unregister the producer (async produces in flight are flushed first).

        Raises:
            MemphisError: the broker refused.
        """
        # Destroying is what the caller wants; earlier async failures were theirs to flush.
        with contextlib.suppress(MemphisError):
            self.flush()
        pump = self._pump
        pump.wait(pump.call(lambda now: pump.client.destroy_producer(self._state, now)))

    def __repr__(self) -> str:
        return f"<Producer {self.name!r} station={self.station_name!r}>"
