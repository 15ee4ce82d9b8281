# GENERATED from _memphis_async/_consumer.py by scripts/unasync.py: do not edit this copy.
"""Consumers and the messages they receive: the one source of this code for every frontend.

memphis_sync uses the blocking copy of it that ``scripts/unasync.py`` generates (``make test``
fails when that copy is stale); the other frontends use it as it is.
So everything here is written once, and the rules it applies come from the core: what a fetch
returns, what happens to a batch nobody reads, when a consume loop pulls again or stops.

Message actions (``ack``, ``nack``, ``delay``, ``dead_letter``) never wait for the broker: they
queue their publish in the core, and the driver writes it with whatever else is queued.
They return as soon as the publish is queued.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from memphis_core import (
    Client,
    ConsumeHandlerError,
    ConsumerInfo,
    ConsumerState,
    Delivery,
    MemphisError,
    Operation,
)
from memphis_core.memphis._deliveries import MessageView
from memphis_core.memphis._options import FetchKeywords, FetchOptions, fetch_options

if TYPE_CHECKING:
    from ._driver import Driver, Task

__all__ = ["Consumer", "ErrorHandler", "Handler", "Message"]

_log = logging.getLogger("memphis.consumer")

#: ``handler(messages, error, context)``, a plain function.
Handler = Callable[[list["Message"], MemphisError | None, Any], None]
#: ``error_handler(consumer, error)``, a plain function.
ErrorHandler = Callable[["Consumer", MemphisError], None]


class Message(MessageView):
    """A received message. Settle it (ack, nack, delay or dead letter) once, within the
    consumer's ``max_ack_time``; settling twice raises ``MessageAlreadySettledError``."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver, received: Delivery) -> None:
        super().__init__(received)
        self._driver = driver

    def ack(self) -> None:
        """Acknowledge: the broker will not deliver it again.

        Raises:
            MessageAlreadySettledError: it was already acked, nacked, delayed or dead-lettered.
            ConnectionClosedError: the connection is closed.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.ack(self._received))

    def nack(self) -> None:
        """Ask for redelivery now (it counts as a delivery attempt).

        Raises:
            MessageAlreadySettledError: it was already settled.
            ConnectionClosedError: the connection is closed.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.nack(self._received))

    def delay(self, seconds: float) -> None:
        """Redeliver after ``seconds`` (float seconds, while under ``max_msg_deliveries``).

        Args:
            seconds: delay before redelivery, in seconds (a finite number >= 0).

        Raises:
            MemphisError: ``cannot delay DLS message`` for a message resent from the DLS.
            LocalProtocolError: a negative or non-finite delay.
            MessageAlreadySettledError: it was already settled.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.delay(self._received, seconds))

    def in_progress(self) -> None:
        """Tell the broker the message is still being worked on (``+WPI``): its ack timer
        restarts, so it is redelivered ``max_ack_time`` from now rather than from its
        delivery. Call it as often as needed before settling; a no-op for a dead letter
        resent by the broker, which has no ack timer.

        Raises:
            MessageAlreadySettledError: it was already settled.
            ConnectionClosedError: the connection is closed.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.in_progress(self._received, now))

    def dead_letter(self, reason: str) -> None:
        """Stop redelivering and store the message in the station's dead-letter store.

        Raises:
            MessageAlreadySettledError: it was already settled.
            ConnectionClosedError: the connection is closed.
        """
        driver = self._driver
        driver.call(lambda now: driver.client.dead_letter(self._received, reason))


class Consumer:
    """A member of a consumer group: ``fetch()`` batches, iterate over messages, or
    ``consume(handler)`` in the background."""

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
        """The consumer's name, as given."""
        return self._state.name

    @property
    def consumer_group(self) -> str:
        """The consumer group (its own name when none was given)."""
        return self._state.options.consumer_group

    def set_context(self, context: Any) -> None:
        """An object passed as the third argument of every ``consume`` handler call.

        Args:
            context: any object (default before a call: ``None``).
        """
        self._context = context

    # ------------------------------------------------------------------ fetch

    def fetch(self, batch_size: int = 10, **options: Unpack[FetchKeywords]) -> list[Message]:
        """Up to ``batch_size`` messages; waits at most ``batch_max_wait_time`` for them, or
        ``timeout`` seconds if that is shorter (then it returns what arrived, maybe nothing).

        Args:
            batch_size: most messages to return, 1-5000 (default 10).
            options: the options of :class:`FetchKeywords`.

        Returns:
            The messages, oldest first; an empty list if none arrived in time.

        Messages the consumer holds come first: given back unread (by an interrupted fetch, a
        stopped loop), then resent dead letters, then what earlier pulls brought. Otherwise
        every partition read is pulled at once, and the call returns when the batch is full,
        or as soon as it has messages and the broker says nothing more waits behind them, or
        when the wait ends: ``while batch := consumer.fetch()`` stops only once every
        partition is empty. The broker's ``pending`` count is per partition (and per group,
        whatever member takes them): a partition that has sent nothing yet is not waited
        for, and what it sends later is kept for the next call. With ``prefetch=True`` the
        next batch is pulled in the background as soon as this one is taken. A fetch that is
        interrupted (KeyboardInterrupt) keeps its batch with the
        consumer for the next fetch: it costs no delivery attempt.

        Raises:
            TypeError: an unknown keyword.
            LocalProtocolError: bad batch size or partition choice.
            StationUnreachableError: the station or the group's durable is gone.
            ConnectionClosedError: the connection is closed or closing.
        """
        return self._fetch(fetch_options(batch_size, **options))

    def _fetch(self, opts: FetchOptions) -> list[Message]:
        op = self._start_fetch(
            opts.batch_size, opts.prefetch, opts.partition_key, opts.partition_number, opts.timeout
        )
        received = self._wait_batch(op, None)
        return [Message(self._driver, r) for r in received or ()]

    def _start_fetch(
        self,
        batch_size: int,
        prefetch: bool,
        key: str | None,
        number: int | None,
        timeout: float | None = None,
        *,
        eager: bool = False,
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
                timeout=timeout,
                eager=eager,
            )
        )

    def _wait_batch(
        self, op: Operation[list[Delivery]], stop: Callable[[], bool] | None
    ) -> list[Delivery] | None:
        """The batch of ``op``, or None when ``stop()`` became true first.

        Whoever stops waiting for a batch (an interrupt, stop_consume) hands it back to the
        core, which keeps it for the consumer's next fetch.
        """
        driver = self._driver
        try:
            if stop is None:
                return driver.wait(op)
            driver.wait_for(lambda: op.done or stop())
            if op.done:
                return op.outcome()
        except MemphisError:
            raise
        except BaseException:
            driver.call(lambda now: driver.client.abandon_fetch(op), closed_ok=True)
            raise
        driver.call(lambda now: driver.client.abandon_fetch(op), closed_ok=True)
        return None

    def __iter__(self) -> Generator[Message, None, None]:
        """Messages forever (until the consumer fails or is destroyed), one at a time.

        A generator, so ``contextlib.closing(iter(consumer))`` ends it, and its pulls, at
        once.

        Each message is yielded as soon as a read brings it: the loop does not wait for a
        full batch or for ``batch_max_wait_time`` (see ``consume``). Each step takes one
        message from the consumer, which keeps the rest of what its pulls brought: leaving
        the loop early loses nothing and keeps the order, and the next fetch or iteration
        starts with the message after the last one yielded.
        """
        driver = self._driver
        state = self._state
        try:
            while True:
                op = driver.call(functools.partial(_next_message, driver.client, state))
                # At most one message: nothing unread is ever held in this frame.
                for received in self._wait_batch(op, None) or ():
                    yield Message(driver, received)
        finally:
            # Runs when the loop is left or the generator is collected; no await in here. The
            # pulls that went on for the loop end; what they bring stays with the consumer.
            client = driver.client
            driver.call(functools.partial(_end_eager_pull, client, state), closed_ok=True)

    # ------------------------------------------------------------------ consume

    def consume(
        self,
        handler: Handler,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
    ) -> None:
        """Call ``handler(messages, error, context)`` for every batch, in the background,
        until ``stop_consume()``. Returns at once; a second call while consuming does nothing.

        The handler gets the messages of each read as they arrive (up to ``batch_size``),
        not when a batch is full or its pull expires: one message alone is handled after a
        network hop, not after ``batch_max_wait_time``. The loop pulls again at once while
        the pull on the server goes on or after a full batch, and waits ``pull_interval``
        once a pull ended short (the station is drained). Errors reach the handler as
        ``error`` (with an empty batch); the loop ends only when the station or the
        connection is gone. A handler that raises is reported to the consumer's
        ``error_handler`` (``ConsumeHandlerError``, the exception as its cause) and the loop
        goes on.
        The loop runs in a thread of the connection.
        The handler is a plain function.

        Args:
            handler: ``handler(messages, error, context)``; ``error`` is a
                :class:`MemphisError` when a pull failed (then ``messages`` is empty).
            partition_key: read only the partition this key hashes to (default: all, round
                robin).
            partition_number: read only this 1-based partition (default: all, round robin).

        Raises:
            LocalProtocolError: a bad partition choice (checked before anything starts).
            TypeError: ``handler`` is what ``inspect.iscoroutinefunction`` accepts, which no
                thread can run (checked before anything starts).
        """
        self._driver.check_callback(handler, "handler")
        if not self._stop[0]:
            return  # already consuming
        fetch_options(
            self._state.options.batch_size,
            partition_key=partition_key,
            partition_number=partition_number,
        )  # validate before starting
        stop = self._stop = [False]
        driver = self._driver
        state = self._state
        driver.call(lambda now: driver.client.start_consumer_pings(state, now))

        def loop() -> None:
            try:
                self._consume_loop(handler, partition_key, partition_number, stop)
            finally:
                stop[0] = True  # ended by itself (unreachable, closed): consume() may restart
                # No reader any more for a pull still going on for the loop.
                driver.call(
                    functools.partial(_end_eager_pull, driver.client, state), closed_ok=True
                )

        self._task = driver.spawn(loop, f"memphis-consume-{self.name}")

    def _consume_loop(
        self, handler: Handler, key: str | None, number: int | None, stop: list[bool]
    ) -> None:
        state = self._state
        driver = self._driver
        chosen = key is not None or number is not None

        def stopping() -> bool:
            return stop[0]

        # A closed connection is not checked here: the next fetch raises ConnectionClosedError,
        # the handler hears it, and the core's policy (next_pull) ends the loop.
        while not stop[0]:
            received: list[Delivery] = []
            error: MemphisError | None = None
            try:
                # Eager: the handler gets each read's messages at once, not when the batch is
                # full or the pull expires (Pulls.hand_over in the core).
                op = self._start_fetch(state.options.batch_size, False, key, number, eager=True)
                # The batch or stop_consume(), whichever comes first: stopping never waits out
                # a long pull.
                batch = self._wait_batch(op, stopping)
                if batch is None:
                    break
                received = batch
            except MemphisError as exc:
                error = exc
            if stop[0]:
                # Not handed to anyone: the consumer keeps them for its next fetch.
                driver.call(functools.partial(_give_back, driver.client, received), closed_ok=True)
                break
            messages = [Message(driver, r) for r in received]
            try:
                driver.call_user(handler, messages, error, self._context)
            except Exception as exc:
                failure = ConsumeHandlerError(f"the consume handler of {self.name} raised {exc!r}")
                failure.__cause__ = exc
                self._report_error(failure)
            delay = driver.call(
                functools.partial(_next_pull, driver.client, state, len(received), error, chosen),
                kick=False,
                closed_ok=True,
            )
            if delay is None:
                break
            if delay:
                driver.wait_for(stopping, delay)

    def stop_consume(self) -> None:
        """Stop the consume loop; returns once its current handler call (if any) returned."""
        self._stop[0] = True
        driver = self._driver
        driver.notify()  # the loop waits on the driver's "changed" signal
        task = self._task
        if task is not None and not driver.in_task(task):
            task.join()
        if self._task is task:
            self._task = None

    def _set_error_handler(self, error_handler: ErrorHandler | None) -> None:
        self._error_handler = error_handler

    def _report_error(self, error: MemphisError) -> None:
        """Hand ``error`` to the error handler; without one, or if it raises, log it.

        A raising error handler must not end the consume loop or the connection: it is logged
        with its traceback on the ``memphis.consumer`` logger, the same in every frontend.
        """
        if self._error_handler is None:
            _log.warning("consumer %s: %s", self.name, error, exc_info=error.__cause__)
            return
        try:
            self._driver.call_user(self._error_handler, self, error)
        except Exception:
            _log.exception("the error handler of consumer %s raised", self.name)

    def info(self) -> ConsumerInfo:
        """The group's progress on the broker, summed over the station's partitions.

        ``num_pending`` is the lag (messages not yet delivered to the group),
        ``num_ack_pending`` the delivered but unacked ones, ``num_redelivered`` those delivered
        more than once and still unacked, ``num_waiting`` the pull requests held by the server
        (JetStream's names); ``partitions`` has the same per partition. They come from
        JetStream ``CONSUMER.INFO`` on the group's durable, so they count every member of the
        group, not only this consumer.

        Raises:
            PermissionsViolationError: the user's NATS permissions refuse ``CONSUMER.INFO``.
            MemphisError: JetStream's error, e.g. the group's durable is gone.
            RequestTimeoutError: JetStream did not answer within 10 s.
        """
        state = self._state
        return self._driver.run(lambda now: self._driver.client.consumer_info(state, now))

    def destroy(self) -> None:
        """Stop consuming and unregister; the group's durable goes when its last member does.

        Messages held unread by this consumer are nacked, so another member gets them at once.

        Raises:
            MemphisError: the broker refused.
            RequestTimeoutError: no reply after the control-plane retries.
        """
        self.stop_consume()
        client = self._driver.client
        self._driver.run(lambda now: client.destroy_consumer(self._state, now))

    def __enter__(self) -> Consumer:
        """The consumer itself; leaving the block closes it here only, not on the broker.

        Its consume loop stops, its unread messages are nacked and the connection forgets it,
        as closing the connection would; the group keeps its acked progress, since the broker
        deletes a group's durable when its last member is *destroyed* (docs/protocol.md §7.12).
        Call :meth:`destroy` to remove the consumer (and, with the last member, the group).
        """
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_consume()
        client = self._driver.client
        self._driver.call(lambda now: client.close_consumer(self._state), closed_ok=True)

    def __repr__(self) -> str:
        return f"<Consumer {self.name!r} group={self.consumer_group!r}>"


# Bound with functools.partial inside the consume loop, so that each call sees this turn's
# values (``driver.call`` runs them at once; a lambda over loop variables reads as a trap).
def _give_back(client: Client, messages: list[Delivery], now: float) -> None:
    client.give_back(messages)


def _end_eager_pull(client: Client, state: ConsumerState, now: float) -> None:
    client.end_eager_pull(state)


def _next_message(client: Client, state: ConsumerState, now: float) -> Operation[list[Delivery]]:
    return client.next_message(state, now)


def _next_pull(
    client: Client,
    state: ConsumerState,
    received: int,
    error: MemphisError | None,
    chosen: bool,
    now: float,
) -> float | None:
    return client.next_pull(state, received, error, now, chosen=chosen)
