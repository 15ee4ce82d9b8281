"""Blocking consumers and the messages they receive."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from memphis_core import (
    Client,
    ConsumerState,
    Delivery,
    MemphisError,
    MessageView,
    Operation,
    consume_should_stop,
    fetch_options,
)

if TYPE_CHECKING:
    from ._driver import Driver

__all__ = ["Consumer", "Message"]

Handler = Callable[[list["Message"], MemphisError | None, Any], None]
ErrorHandler = Callable[["Consumer", MemphisError], None]


class Message(MessageView):
    """A received message. Acknowledge it with ``ack()`` within the consumer's max_ack_time."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver, received: Delivery) -> None:
        super().__init__(received)
        self._driver = driver

    def ack(self) -> None:
        # Fire-and-forget: leave the write to the I/O thread so the acks of a batch go out
        # together (a write per ack cost more than everything else on the consume path).
        driver = self._driver
        driver.call(lambda now: driver.client.ack(self._received), send=False)
        driver.wake()

    def nack(self) -> None:
        """Ask for redelivery now."""
        driver = self._driver
        driver.call(lambda now: driver.client.nack(self._received), send=False)
        driver.wake()

    def delay(self, seconds: float) -> None:
        """Redeliver after ``seconds`` (while under max_msg_deliveries).

        Raises:
            MemphisError: ``cannot delay DLS message``.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.delay(self._received, seconds))

    def dead_letter(self, reason: str) -> None:
        """Stop redelivering and send the message to the station's dead-letter store."""
        driver = self._driver
        driver.call(lambda now: driver.client.dead_letter(self._received, reason))


class Consumer:
    """A member of a consumer group: ``fetch()`` batches, or ``consume(handler)`` in a thread."""

    def __init__(
        self, driver: Driver, state: ConsumerState, error_handler: ErrorHandler | None
    ) -> None:
        self._driver = driver
        self._state = state
        self._error_handler = error_handler
        self._context: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def consumer_group(self) -> str:
        return self._state.options.consumer_group

    def set_context(self, context: Any) -> None:
        """An object passed as the third argument of every ``consume`` handler call."""
        self._context = context

    def fetch(
        self,
        batch_size: int = 10,
        *,
        prefetch: bool = False,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> list[Message]:
        """Up to ``batch_size`` messages; waits at most ``batch_max_wait_time`` for them.

        With ``prefetch=True`` the next batch is requested in the background right away.

        Raises:
            LocalProtocolError: bad batch size or partition choice.
            MemphisError: ``station unreachable`` once the station or group is gone.
        """
        op = self._start_fetch(batch_size, prefetch, partition_key, partition_number)
        return [Message(self._driver, received) for received in self._driver.wait(op)]

    def _start_fetch(
        self, batch_size: int, prefetch: bool, key: str | None, number: int | None
    ) -> Operation[list[Delivery]]:
        driver = self._driver
        return driver.call(
            lambda now: driver.client.fetch(
                self._state,
                batch_size,
                now,
                partition_key=key,
                partition_number=number,
                prefetch=prefetch,
            )
        )

    def __iter__(self) -> Iterator[Message]:
        """Messages forever (until the consumer fails or is destroyed), one batch at a time."""
        while True:
            yield from self.fetch(self._state.options.batch_size)

    def consume(
        self,
        handler: Handler,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> None:
        """Call ``handler(messages, error, context)`` from a background thread for every batch.

        A full batch is followed by the next pull at once; after a short one the thread waits
        ``pull_interval``. ``stop_consume()`` ends it promptly.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        fetch_options(
            self._state.options.batch_size,
            partition_key=partition_key,
            partition_number=partition_number,
        )  # validate before starting
        self._stop.clear()
        driver = self._driver
        driver.call(lambda now: driver.client.start_consumer_pings(self._state, now), send=False)
        self._thread = threading.Thread(
            target=self._consume_loop,
            args=(handler, partition_key, partition_number),
            name=f"memphis-consume-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def _consume_loop(self, handler: Handler, key: str | None, number: int | None) -> None:
        state = self._state
        driver = self._driver
        client = driver.client
        stop = self._stop
        while not stop.is_set():
            received: list[Delivery] = []
            error: MemphisError | None = None
            try:
                op = self._start_fetch(state.options.batch_size, False, key, number)
                # Wait for the batch or for stop_consume(), whichever comes first, so stopping
                # never waits out a long pull.
                driver.wait_for(functools.partial(_done_or_set, op, stop))
                if not op.done:
                    driver.call(functools.partial(_abandon, client, op))
                    break
                received = op.outcome()
            except MemphisError as exc:
                error = exc
            if stop.is_set():
                # Not handed to anyone: let another member of the group have them now.
                driver.call(functools.partial(_release, client, received))
                break
            try:
                handler([Message(driver, r) for r in received], error, self._context)
            except Exception as exc:
                self._report_error(MemphisError(f"consume handler raised {exc!r}"))
            if consume_should_stop(error):
                break
            delay = state.pull_delay(len(received))
            if delay:
                stop.wait(delay)

    def stop_consume(self) -> None:
        """Stop the consume thread; returns once its current handler call (if any) returned."""
        self._stop_consume(None)

    def _stop_consume(self, timeout: float | None) -> None:
        self._stop.set()
        with self._driver.changed:
            self._driver.changed.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _set_error_handler(self, error_handler: ErrorHandler | None) -> None:
        self._error_handler = error_handler

    def _report_error(self, error: MemphisError) -> None:
        if self._error_handler is not None:
            self._error_handler(self, error)

    def destroy(self) -> None:
        """Stop consuming and unregister; the group's durable goes when its last member does."""
        self.stop_consume()
        driver = self._driver
        driver.wait(driver.call(lambda now: driver.client.destroy_consumer(self._state, now)))

    def __repr__(self) -> str:
        return f"<Consumer {self.name!r} group={self.consumer_group!r}>"


def _done_or_set(op: Operation[Any], event: threading.Event) -> bool:
    return op.done or event.is_set()


def _abandon(client: Client, op: Operation[list[Delivery]], now: float) -> None:
    client.abandon_fetch(op)


def _release(client: Client, messages: list[Delivery], now: float) -> None:
    client.release_messages(messages)
