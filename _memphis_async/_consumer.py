"""Async consumers and the messages they receive (shared by memphis_trio and memphis_asyncio).

Message actions (``ack``, ``nack``, ``delay``, ``dead_letter``) are coroutines although they
never wait for the broker: they queue their publish in the core and kick the pump. They are
awaitable for symmetry with every other call that puts bytes on the wire (and so that they can
grow backpressure later without an API change); awaiting one costs a coroutine, not a round
trip.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from memphis_core import (
    ConsumerState,
    Delivery,
    MemphisError,
    MessageView,
    Operation,
    consume_should_stop,
    fetch_options,
)

if TYPE_CHECKING:
    from ._backend import Task
    from ._driver import Driver

__all__ = ["Consumer", "ErrorHandler", "Handler", "Message"]

_log = logging.getLogger("memphis")

#: ``handler(messages, error, context)``; a coroutine function (a plain callable works too).
Handler = Callable[[list["Message"], MemphisError | None, Any], Awaitable[None] | None]
#: ``error_handler(consumer, error)``; a coroutine function (a plain callable works too).
ErrorHandler = Callable[["Consumer", MemphisError], Awaitable[None] | None]


async def _call(fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


class Message(MessageView):
    """A received message. Acknowledge it with ``await msg.ack()`` within max_ack_time."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver, received: Delivery) -> None:
        super().__init__(received)
        self._driver = driver

    async def ack(self) -> None:
        driver = self._driver
        driver.call(lambda now: driver.client.ack(self._received))

    async def nack(self) -> None:
        """Ask for redelivery now."""
        driver = self._driver
        driver.call(lambda now: driver.client.nack(self._received))

    async def delay(self, seconds: float) -> None:
        """Redeliver after ``seconds`` (while under max_msg_deliveries).

        Raises:
            MemphisError: ``cannot delay DLS message``.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.delay(self._received, seconds))

    async def dead_letter(self, reason: str) -> None:
        """Stop redelivering and send the message to the station's dead-letter store."""
        driver = self._driver
        driver.call(lambda now: driver.client.dead_letter(self._received, reason))


class Consumer:
    """A member of a consumer group: ``await fetch()`` batches, ``async for`` messages, or
    ``await consume(handler)`` in a task of the connection."""

    def __init__(
        self, driver: Driver, state: ConsumerState, error_handler: ErrorHandler | None
    ) -> None:
        self._driver = driver
        self._state = state
        self._error_handler = error_handler
        self._context: Any = None
        # Each consume loop gets its own stop token: a loop told to stop stays stopped even if
        # consume() starts a new one before the old one has finished.
        self._stop: list[bool] = [True]
        self._task: Task | None = None

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def consumer_group(self) -> str:
        return self._state.options.consumer_group

    def set_context(self, context: Any) -> None:
        """An object passed as the third argument of every ``consume`` handler call."""
        self._context = context

    # ------------------------------------------------------------------ fetch

    async def fetch(
        self,
        batch_size: int = 10,
        *,
        prefetch: bool = False,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> list[Message]:
        """Up to ``batch_size`` messages; waits at most ``batch_max_wait_time`` for them.

        With ``prefetch=True`` the next batch is requested in the background right away.
        Cancelling (a timeout, a cancel scope) gives the batch back: its messages are nacked
        when they arrive, so they are redelivered at once rather than after max_ack_time.

        Raises:
            LocalProtocolError: bad batch size or partition choice.
            MemphisError: ``station unreachable`` once the station or group is gone.
        """
        op = self._start_fetch(batch_size, prefetch, partition_key, partition_number)
        received = await self._wait_batch(op, None)
        return [Message(self._driver, r) for r in received or ()]

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

    async def _wait_batch(
        self, op: Operation[list[Delivery]], stop: Callable[[], bool] | None
    ) -> list[Delivery] | None:
        """The batch of ``op``, or None when ``stop()`` became true first.

        Whoever stops waiting for a batch (cancellation, stop_consume) hands it back to the
        core, which nacks its messages; nothing is left to wait out max_ack_time.
        """
        driver = self._driver
        try:
            if stop is None:
                return await driver.wait(op)
            await driver.wait_for(lambda: op.done or stop())
            if op.done:
                return op.outcome()
        except MemphisError:
            raise
        except BaseException:
            driver.client.abandon_fetch(op)  # synchronous: safe in a cancelled context
            driver.kick()
            raise
        driver.client.abandon_fetch(op)
        driver.kick()
        return None

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages forever (until the consumer fails or is destroyed), one batch at a time.

        Leaving the loop early gives the rest of the current batch back (nacked).
        """
        pending: deque[Message] = deque()
        try:
            while True:
                if not pending:
                    pending.extend(await self.fetch(self._state.options.batch_size))
                    continue
                yield pending.popleft()
        finally:
            # Runs when the loop is left or the generator is collected; no await in here.
            driver = self._driver
            for message in pending:
                with contextlib.suppress(MemphisError):
                    driver.client.nack(message._received)
            driver.kick()

    # ------------------------------------------------------------------ consume

    async def consume(
        self,
        handler: Handler,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> None:
        """Call ``await handler(messages, error, context)`` for every batch, in a task of the
        connection (the ``async with`` nursery), until ``stop_consume()``.

        A full batch is followed by the next pull at once; after a short one the loop waits
        ``pull_interval``. Returns at once; a second call while consuming does nothing.
        """
        if not self._stop[0]:
            return  # already consuming
        fetch_options(
            self._state.options.batch_size,
            partition_key=partition_key,
            partition_number=partition_number,
        )  # validate before starting
        stop = self._stop = [False]
        driver = self._driver
        driver.call(lambda now: driver.client.start_consumer_pings(self._state, now))

        async def loop() -> None:
            try:
                await self._consume_loop(handler, partition_key, partition_number, stop)
            finally:
                stop[0] = True  # ended by itself (unreachable, closed): consume() may restart

        self._task = driver.spawn(loop, f"memphis-consume-{self.name}")

    async def _consume_loop(
        self, handler: Handler, key: str | None, number: int | None, stop: list[bool]
    ) -> None:
        state = self._state
        driver = self._driver

        def stopping() -> bool:
            return stop[0]

        while not stop[0] and not driver.closed:
            messages: list[Message] = []
            received: list[Delivery] = []
            error: MemphisError | None = None
            try:
                op = self._start_fetch(state.options.batch_size, False, key, number)
                # The batch or stop_consume(), whichever comes first: stopping never waits out
                # a long pull.
                batch = await self._wait_batch(op, stopping)
                if batch is None:
                    break
                received = batch
                messages = [Message(driver, r) for r in received]
            except MemphisError as exc:
                error = exc
            if stop[0]:
                # Not handed to anyone: let another member have them now.
                with contextlib.suppress(MemphisError):
                    driver.client.release_messages(received)
                driver.kick()
                break
            try:
                await _call(handler, messages, error, self._context)
            except Exception as exc:
                await self._report_error(MemphisError(f"consume handler raised {exc!r}"))
            if consume_should_stop(error) or driver.closed:
                break
            delay = state.pull_delay(len(received))
            if delay:
                await driver.wait_for(stopping, delay)

    async def stop_consume(self) -> None:
        """Stop the consume loop; returns once it has finished its current handler call."""
        self._stop[0] = True
        driver = self._driver
        driver.notify()  # the loop waits on the driver's "changed" event
        task = self._task
        if task is not None and not driver.in_task(task):
            await task.join()
        if self._task is task:
            self._task = None

    def _set_error_handler(self, error_handler: ErrorHandler | None) -> None:
        self._error_handler = error_handler

    async def _report_error(self, error: MemphisError) -> None:
        if self._error_handler is None:
            _log.warning("consumer %s: %s", self.name, error)
            return
        try:
            await _call(self._error_handler, self, error)
        except Exception:
            # A buggy handler must not take the connection down with it.
            _log.exception("the error handler of consumer %s raised", self.name)

    async def destroy(self) -> None:
        """Stop consuming and unregister; the group's durable goes when its last member does."""
        await self.stop_consume()
        client = self._driver.client
        await self._driver.run(lambda now: client.destroy_consumer(self._state, now))

    def __repr__(self) -> str:
        return f"<Consumer {self.name!r} group={self.consumer_group!r}>"
