"""Every error the library raises on purpose: the one place to look them up.

The NATS layer defines its own errors in ``memphis_core/nats/_errors.py`` (it knows nothing of
this layer); this module defines the Memphis layer's and re-exports the NATS ones, so its
``__all__`` is the whole public set. ``memphis_core`` and the three frontends export exactly
these classes (the same objects), and ``tests/core/test_errors.py`` checks that the tree below
is the classes' real one. Other standard bases are given in parentheses::

    MemphisError                               root: one ``except`` catches everything
    +-- LocalProtocolError (ValueError)        bad argument; nothing was sent
    +-- RemoteProtocolError                    the server broke the NATS protocol
    +-- MemphisConnectError                    connecting or reconnecting failed
    |   +-- ConnectionClosedError              the connection is closed
    |   +-- ConnectionLostError                it dropped under a request that is not replayed
    +-- RequestTimeoutError (TimeoutError)     no reply or PubAck in time
    +-- NoRespondersError                      nobody listens on the subject (status 503)
    +-- RequestAbandonedError                  the caller gave up on the request
    +-- MemphisSchemaError                     schema problems
    |   +-- MessageTypeError (TypeError)       a message of a type that cannot be sent
    |   +-- SchemaValidationError              the message does not fit the station's schema
    |   +-- MissingExtraError (ImportError)    the ``schemas`` extra is not installed
    +-- MemphisHeaderError (ValueError)        a header that cannot be sent
    +-- ConsumeHandlerError                    the ``consume()`` handler raised
    +-- PermissionsViolationError              NATS permissions refuse the subject
    +-- StationNotFoundError                   the station has no stream
    +-- StationUnreachableError                the consumer's station or durable is gone
    +-- StationTemporarilyUnavailableError     JetStream did not serve it in time (election)
    +-- MessageAlreadySettledError             the message was already acked or nacked
    +-- AsyncProduceError                      async produces failed since the last flush
    +-- CloseIncompleteError                   close could not confirm everything

``ProduceFailure`` (one failed async produce, carried by the last two) is not an exception but
lives here with them. Internal classes stay in their modules: the schema validators' ``Invalid``
never leaves the core, and the parser's ``ParseError`` reaches a caller only as the
``RemoteProtocolError`` it subclasses (``receive_data`` puts it in a ``Disconnected`` event).
"""

from __future__ import annotations

from typing import Final

from memphis_core.nats._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    NoRespondersError,
    RemoteProtocolError,
    RequestAbandonedError,
    RequestTimeoutError,
)

__all__ = [
    "AsyncProduceError",
    "CloseIncompleteError",
    "ConnectionClosedError",
    "ConnectionLostError",
    "ConsumeHandlerError",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MessageAlreadySettledError",
    "MessageTypeError",
    "MissingExtraError",
    "NoRespondersError",
    "PermissionsViolationError",
    "ProduceFailure",
    "RemoteProtocolError",
    "RequestAbandonedError",
    "RequestTimeoutError",
    "SchemaValidationError",
    "StationNotFoundError",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
]

# The Go SDK's text, grammar included (docs/protocol.md §11.1): applications match on it.
_VALIDATION_FAILED: Final = "Schema validation has failed: "


class MemphisSchemaError(MemphisError):
    """A message does not validate against the station's schema, or a schema is invalid."""


class MessageTypeError(MemphisSchemaError, TypeError):
    """A message of a type that cannot be sent (a ``set``, a ``datetime``, ``None``...).

    A ``TypeError``, as Python code expects for a value of the wrong type, and a
    ``MemphisSchemaError`` for code written against the Go SDK's ``unsupported message type``.
    """


class SchemaValidationError(MemphisSchemaError):
    """A message does not fit the station's schema; nothing was published.

    ``str(error)`` is ``Schema validation has failed: <validation_error>`` (docs/protocol.md §11.1).

    Attributes:
        validation_error: The inner error text, without the prefix.
        data: The message bytes as far as they could be produced (validator output, else the
            plain serialisation), for the ``$memphis_schemaverse_dls`` report (docs/protocol.md
            §9.2); None when the message could not be turned into bytes at all.
    """

    def __init__(self, validation_error: str, data: bytes | None = None) -> None:
        super().__init__(_VALIDATION_FAILED + validation_error)
        self.validation_error = validation_error
        self.data = data


# Both a MemphisSchemaError (a produce on that station cannot proceed) and an ImportError (the usual
# Python signal for a missing optional dependency).
class MissingExtraError(MemphisSchemaError, ImportError):
    """A schema library is not installed; ``pip install 'memphis-sansio[schemas]'``."""


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


class StationNotFoundError(MemphisError):
    """The station has no stream on the broker (never created, or destroyed)."""


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
