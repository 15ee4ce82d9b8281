"""Blocking producers."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Final

from memphis_core import (
    Headers,
    MemphisError,
    Operation,
    ProduceOptions,
    ProducerState,
    PubAck,
    RequestTimeoutError,
    SchemaValidationError,
    produce_options,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._driver import Driver

__all__ = ["Producer"]

_DEFAULT_ACK_WAIT: Final = 15.0
_DESTROY_FLUSH_TIMEOUT: Final = 30.0
# The common call passes no option at all: reuse one validated set instead of building it.
_DEFAULTS: Final = {flag: produce_options(async_produce=flag) for flag in (False, True)}


class Producer:
    """A registered producer. Thread-safe: several threads may produce on one producer."""

    def __init__(self, driver: Driver, state: ProducerState) -> None:
        self._driver = driver
        self._state = state

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
        ack_wait: float = _DEFAULT_ACK_WAIT,
        headers: Mapping[str, str] | Headers | None = None,
        async_produce: bool = False,
        msg_id: str | None = None,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> PubAck | None:
        """Produce one message.

        Synchronous (the default): returns once the station stored it, with its PubAck.
        ``async_produce=True``: returns at once; when too many produces (or bytes) await their
        acknowledgement this call blocks until half of them are back (backpressure). ``flush()``
        waits for all of them and raises the first failure.

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
            opts = _DEFAULTS[async_produce]
        else:
            opts = produce_options(
                ack_wait=ack_wait,
                headers=headers,
                async_produce=async_produce,
                msg_id=msg_id,
                partition_key=partition_key,
                partition_number=partition_number,
            )
        payload = self._serialize(message, opts)
        state = self._state
        driver = self._driver
        client = driver.client
        if opts.async_produce:
            if state.window_full:
                driver.send_soon()
                driver.wait_for(lambda: state.window_drained)
            driver.call(
                lambda now: client.produce(state, None, opts, now, payload=payload), send=False
            )
            driver.wake()
            return None
        op: Operation[PubAck | None] = driver.call(
            lambda now: client.produce(state, None, opts, now, payload=payload)
        )
        return driver.wait(op)

    def _serialize(self, message: object, opts: ProduceOptions) -> bytes:
        # Validation can be slow (JSON Schema, Avro): do it before taking the connection lock.
        try:
            return self._state.station.serialize(message)
        except SchemaValidationError as exc:
            report = functools.partial(
                self._driver.client.report_schema_failure, self._state, exc, opts
            )
            self._driver.call(lambda now: report())
            raise

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every async produce is acknowledged; raise the first failure, if any.

        Raises:
            MemphisError: the first async produce that failed since the last flush.
            RequestTimeoutError: ``timeout`` passed first.
        """
        state = self._state
        self._driver.send_soon()
        if not self._driver.wait_for(lambda: state.in_flight == 0, timeout):
            raise RequestTimeoutError("memphis: timeout waiting for async produces")
        with self._driver.lock:
            error, state.first_error = state.first_error, None
        if error is not None:
            raise error

    def destroy(self) -> None:
        """Unregister the producer (async produces in flight get 30 s to finish first).

        Raises:
            MemphisError: the broker refused.
        """
        # Destroying is what the caller wants; earlier async failures were theirs to flush.
        with contextlib.suppress(MemphisError):
            self.flush(_DESTROY_FLUSH_TIMEOUT)
        driver = self._driver
        driver.wait(driver.call(lambda now: driver.client.destroy_producer(self._state, now)))

    def __repr__(self) -> str:
        return f"<Producer {self.name!r} station={self.station_name!r}>"
