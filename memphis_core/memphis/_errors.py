"""Errors that only the Memphis layer raises: schemas, headers, stations that went away.

They extend the NATS layer's ``MemphisError`` so that one ``except MemphisError`` catches
everything the library raises on purpose.
"""

from __future__ import annotations

from typing import Final

from memphis_core.nats._errors import MemphisError

__all__ = [
    "AsyncProduceError",
    "CloseIncompleteError",
    "ConsumeHandlerError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MessageAlreadySettledError",
    "MessageTypeError",
    "PermissionsViolationError",
    "ProduceFailure",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
]


class MemphisSchemaError(MemphisError):
    """A message does not validate against the station's schema, or a schema is invalid."""


class MessageTypeError(MemphisSchemaError, TypeError):
    """A message of a type that cannot be sent (a ``set``, a ``datetime``, ``None``...).

    A ``TypeError``, as Python code expects for a value of the wrong type, and a
    ``MemphisSchemaError`` for code written against the Go SDK's ``unsupported message type``.
    """


class ConsumeHandlerError(MemphisError):
    """The ``consume()`` handler raised; the exception is the ``__cause__``.

    Handed to the consumer's ``error_handler`` (logged without one). The loop goes on with the
    next batch: the messages of the failed call that were not acked are redelivered after
    ``max_ack_time``.
    """


class MemphisHeaderError(MemphisError, ValueError):
    """A header name or value cannot be sent (e.g. a key starting with ``$memphis``)."""


# Ends a consume loop (``consume_should_stop``): unlike a 503 during an election, nothing will bring
# the durable back (docs/protocol.md §7.9).
class PermissionsViolationError(MemphisError):
    """The server refused a request because the user's NATS permissions do not allow its
    subject (``-ERR 'Permissions Violation for Publish to "<subject>"'``)."""


class StationUnreachableError(MemphisError):
    """The consumer's station or durable is gone (``station unreachable`` in the Go SDK)."""


class MessageAlreadySettledError(MemphisError):
    """The message was already acked, nacked, delayed or dead-lettered; nothing was sent.

    The counterpart of nats-py's ``MsgAlreadyAckdError``: settling twice would tell the broker
    something the application did not mean (a dead letter for a message already processed).
    """


# How many failures an error message spells out; the error object carries all it was given.
# Long enough to see a pattern (one station? one msg_id range?), short enough for a log line when
# thousands failed during an outage.
_SHOWN: Final = 3


class ProduceFailure:
    """One async produce that failed: its position on its producer (1 = the first message the
    producer sent), its ``msg_id`` if it had one, and why it failed."""

    __slots__ = ("error", "msg_id", "position", "producer")

    def __init__(
        self, producer: str, position: int, msg_id: str | None, error: MemphisError
    ) -> None:
        self.producer = producer
        self.position = position
        self.msg_id = msg_id
        self.error = error

    def __str__(self) -> str:
        which = f"{self.producer} #{self.position}"
        if self.msg_id is not None:
            which += f" (msg_id {self.msg_id!r})"
        return f"{which}: {self.error}"

    def __repr__(self) -> str:
        return f"ProduceFailure({self})"


def _describe(failures: tuple[ProduceFailure, ...], count: int) -> str:
    shown = "; ".join(str(failure) for failure in failures[:_SHOWN])
    more = count - min(len(failures), _SHOWN)
    return shown + (f"; and {more} more" if more > 0 else "")


class AsyncProduceError(MemphisError):
    """Async produces failed since the last ``flush()``.

    Attributes:
        failures: the failed messages, oldest first (at most the first 1,000 are kept).
        count: how many failed in all.
    """

    def __init__(self, failures: tuple[ProduceFailure, ...], count: int) -> None:
        super().__init__(f"{count} async produce(s) failed: {_describe(failures, count)}")
        self.failures = failures
        self.count = count


class CloseIncompleteError(MemphisError):
    """``close()`` could not confirm everything the caller had been told was accepted.

    The connection is closed all the same. ``unconfirmed`` async produces had no
    acknowledgement when the close timeout ran out (they may or may not be stored: produce with
    ``msg_id`` to retry them safely); ``failures`` are async produces that failed and were never
    reported by a ``flush()``; ``acks_unconfirmed`` is true when the connection ended before the
    broker confirmed the acks, nacks and dead letters written before the close.
    """

    def __init__(
        self,
        *,
        unconfirmed: int,
        failures: tuple[ProduceFailure, ...],
        count: int,
        acks_unconfirmed: bool,
        cause: MemphisError | None,
    ) -> None:
        parts = []
        if unconfirmed:
            parts.append(f"{unconfirmed} async produce(s) were not acknowledged in time")
        if count:
            parts.append(f"{count} async produce(s) failed: {_describe(failures, count)}")
        if acks_unconfirmed:
            parts.append("acknowledgements may not have reached the broker")
        if cause is not None:
            parts.append(f"cause: {cause}")
        super().__init__("close: " + "; ".join(parts))
        self.unconfirmed = unconfirmed
        self.failures = failures
        self.count = count
        self.acks_unconfirmed = acks_unconfirmed
        # Set by hand because the error is built, not raised, where the cause is known: the drain
        # finishes the operation with it later.
        self.__cause__ = cause


class StationTemporarilyUnavailableError(MemphisError):
    """JetStream did not serve the station within the call's deadline, but it was not found gone.

    What a leader election in a JetStream cluster looks like (NATS status 503 for a few seconds,
    docs/cluster-client.md): the call was retried with backoff until its own deadline
    (``ack_wait`` for a produce, ``batch_max_wait_time`` for a fetch). A consume loop reports it
    to its handler and keeps pulling; it never ends a consume loop, unlike
    :class:`StationUnreachableError`.
    """
