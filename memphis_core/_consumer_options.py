"""Consumer and fetch options, and the small argument checkers every option builder uses.

Split out of ``_options`` to keep both modules small; ``_options`` re-exports the public names
(:class:`ConsumerOptions`, :class:`FetchOptions`, :func:`consumer_options`,
:func:`fetch_consumer_options`, :func:`fetch_options`, ``MAX_BATCH_SIZE``), so it stays the module
to import from. The shared checkers (``check_int``, ``check_seconds``, ``checked_name``...) live
here rather than in ``_options`` so that the dependency runs one way only: ``_options`` imports
this module, never the reverse. The rules and error texts are those of DESIGN section 5 and
memphis-client-protocol.md sections 8 and 9; see ``_options`` for the conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._errors import LocalProtocolError
from ._names import internal_name, name_error

__all__ = [
    "MAX_BATCH_SIZE",
    "ConsumerOptions",
    "FetchOptions",
    "check_bool",
    "check_int",
    "check_partition",
    "check_seconds",
    "check_str",
    "checked_name",
    "consumer_options",
    "fetch_consumer_options",
    "fetch_options",
]

MAX_BATCH_SIZE: Final = 5000
# Broker limit mirrored client-side (memphis-client-protocol.md section 8.3).
_MAX_DELIVERIES: Final = 10
_BATCH_SIZE_ERROR: Final = "Batch size can not be greater than 5000 or less than 1"

# --------------------------------------------------------------------------------------------
# Small checkers. ``bool`` is an ``int`` subclass; accepting True as "1 partition" hides bugs.


def check_int(value: object, what: str) -> int:
    """An ``int`` that is not a ``bool``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be an int, not {type(value).__name__}")
    return value


def check_bool(value: object, what: str) -> bool:
    """A real ``bool``."""
    if not isinstance(value, bool):
        raise LocalProtocolError(f"{what} must be a bool, not {type(value).__name__}")
    return value


def check_str(value: object, what: str) -> str:
    """A ``str``."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, not {type(value).__name__}")
    return value


def check_seconds(value: object, what: str, *, positive: bool = False) -> float:
    """A duration in float seconds (DESIGN section 5): finite, ``>= 0`` (``> 0`` if positive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LocalProtocolError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise LocalProtocolError(f"{what} must be {bound} seconds, not {value!r}")
    return seconds


def checked_name(name: object, kind: str, what: str) -> str:
    """A station/producer/consumer name the broker would accept, as given."""
    # The broker lower-cases station/producer/consumer names before validating them
    # (memphis-broker-protocol.md section 3.1), so we do the same to produce the same verdict.
    text = check_str(name, what)
    error = name_error(text.lower(), kind)
    if error is not None:
        raise LocalProtocolError(error)
    return text


def check_partition(key: object, number: object, both_error: str) -> tuple[str | None, int | None]:
    """``partition_key``/``partition_number``: at most one, numbers 1-based."""
    if key is not None:
        key = check_str(key, "partition_key")
    if number is not None:
        number = check_int(number, "partition_number")
        # Partitions are 1-based; Go treats 0/-1 as "unset", we refuse them (deviation: clearer).
        if number < 1:
            raise LocalProtocolError("Partition number is out of range")
    if key and number is not None:
        raise LocalProtocolError(both_error)
    return (key or None), number


def _batch_size(value: object) -> int:
    size = check_int(value, "batch_size")
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise LocalProtocolError(_BATCH_SIZE_ERROR)
    return size


# --------------------------------------------------------------------------------------------
# consumers (sections 8 and 9)


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Normalised consumer creation arguments; ``consumer_group`` is never empty."""

    station_name: str
    name: str
    consumer_group: str
    pull_interval: float = 1.0
    batch_size: int = 10
    batch_max_wait_time: float = 5.0
    max_ack_time: float = 30.0
    max_msg_deliveries: int = 10
    start_consume_from_seq: int = 1
    last_messages: int = -1

    @property
    def internal_station(self) -> str:
        """Internal station name (section 3)."""
        return internal_name(self.station_name)

    @property
    def internal_group(self) -> str:
        """The durable name: the consumer group, lower-cased with ``.`` → ``#`` (section 8.3)."""
        return internal_name(self.consumer_group)

    @property
    def max_ack_time_ms(self) -> int:
        """``max_ack_time_ms`` as sent (integer milliseconds, section 8.1)."""
        return round(self.max_ack_time * 1000)


def _consumer(
    station_name: object,
    name: object,
    *,
    consumer_group: object,
    pull_interval: object,
    batch_size: object,
    batch_max_wait_time: object,
    min_wait: float,
    max_ack_time: object,
    max_msg_deliveries: object,
    start_consume_from_seq: object,
    last_messages: object,
) -> ConsumerOptions:
    station = checked_name(station_name, "Station", "station name")
    consumer = checked_name(name, "Consumer", "consumer name")
    group = check_str(consumer_group, "consumer_group")
    # Section 8.1: an empty group means "the consumer name as given" (original case).
    group = checked_name(group, "Consumer", "consumer_group") if group else consumer
    deliveries = check_int(max_msg_deliveries, "max_msg_deliveries")
    if not 1 <= deliveries <= _MAX_DELIVERIES:
        # The broker silently turns <= 0 or > 10 into 10 (section 8.3); say so up front instead.
        raise LocalProtocolError(
            f"max_msg_deliveries must be between 1 and {_MAX_DELIVERIES}, not {deliveries}"
        )
    start = check_int(start_consume_from_seq, "start_consume_from_seq")
    if start < 1:
        raise LocalProtocolError("startConsumeFromSequence has to be a positive number")
    last = check_int(last_messages, "last_messages")
    if last < -1:
        raise LocalProtocolError("min value for LastMessages is -1")
    if start > 1 and last > -1:
        raise LocalProtocolError(
            "Consumer creation options can't contain both startConsumeFromSequence and lastMessages"
        )
    # Sections 8.1 / 9: short waits are raised to the minimum, not refused (Go behaviour).
    wait = max(check_seconds(batch_max_wait_time, "batch_max_wait_time"), min_wait)
    return ConsumerOptions(
        station_name=station,
        name=consumer,
        consumer_group=group,
        pull_interval=check_seconds(pull_interval, "pull_interval"),
        batch_size=_batch_size(batch_size),
        batch_max_wait_time=wait,
        max_ack_time=check_seconds(max_ack_time, "max_ack_time", positive=True),
        max_msg_deliveries=deliveries,
        start_consume_from_seq=start,
        last_messages=last,
    )


def consumer_options(
    station_name: str,
    name: str,
    *,
    consumer_group: str = "",
    pull_interval: float = 1.0,
    batch_size: int = 10,
    batch_max_wait_time: float = 5.0,
    max_ack_time: float = 30.0,
    max_msg_deliveries: int = 10,
    start_consume_from_seq: int = 1,
    last_messages: int = -1,
) -> ConsumerOptions:
    """Validate :func:`create_consumer` arguments (DESIGN section 5, reference section 8.1).

    ``batch_max_wait_time`` below 1 ms is raised to 1 ms.

    Raises:
        LocalProtocolError: bad station/consumer/group name (broker texts), ``Batch size can not
            be greater than 5000 or less than 1``, ``startConsumeFromSequence has to be a positive
            number``, ``min value for LastMessages is -1``, ``Consumer creation options can't
            contain both startConsumeFromSequence and lastMessages``, max_msg_deliveries outside
            1..10, negative or non-numeric durations.
    """
    return _consumer(
        station_name,
        name,
        consumer_group=consumer_group,
        pull_interval=pull_interval,
        batch_size=batch_size,
        batch_max_wait_time=batch_max_wait_time,
        min_wait=0.001,
        max_ack_time=max_ack_time,
        max_msg_deliveries=max_msg_deliveries,
        start_consume_from_seq=start_consume_from_seq,
        last_messages=last_messages,
    )


def fetch_consumer_options(
    station_name: str,
    name: str,
    *,
    consumer_group: str = "",
    batch_size: int = 10,
    batch_max_wait_time: float = 0.1,
    max_ack_time: float = 10.0,
    max_msg_deliveries: int = 2,
    start_consume_from_seq: int = 1,
    last_messages: int = -1,
) -> ConsumerOptions:
    """Validate the consumer half of ``conn.fetch_messages`` (defaults of reference section 9).

    Differs from :func:`consumer_options`: wait 100 ms (values below are raised to 100 ms),
    max_ack_time 10 s, max_msg_deliveries 2. ``start_consume_from_seq``/``last_messages`` are
    accepted here although the Go SDK always uses 1/-1 (its README documents them; section 9).

    Raises:
        LocalProtocolError: as :func:`consumer_options`.
    """
    return _consumer(
        station_name,
        name,
        consumer_group=consumer_group,
        pull_interval=1.0,
        batch_size=batch_size,
        batch_max_wait_time=batch_max_wait_time,
        min_wait=0.1,
        max_ack_time=max_ack_time,
        max_msg_deliveries=max_msg_deliveries,
        start_consume_from_seq=start_consume_from_seq,
        last_messages=last_messages,
    )


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Normalised :meth:`Consumer.fetch` / :meth:`Consumer.consume` options (section 8.6)."""

    batch_size: int = 10
    prefetch: bool = False
    partition_key: str | None = None
    partition_number: int | None = None


def fetch_options(
    batch_size: int = 10,
    *,
    prefetch: bool = False,
    partition_key: str | None = None,
    partition_number: int | None = None,
) -> FetchOptions:
    """Validate :meth:`Consumer.fetch` arguments.

    Raises:
        LocalProtocolError: ``Batch size can not be greater than 5000 or less than 1``,
            ``can not use both partition number and partition key`` (lower-case ``c``: the Go
            consumer text, section 8.4), ``Partition number is out of range`` (< 1).
    """
    key, number = check_partition(
        partition_key, partition_number, "can not use both partition number and partition key"
    )
    return FetchOptions(
        batch_size=_batch_size(batch_size),
        prefetch=check_bool(prefetch, "prefetch"),
        partition_key=key,
        partition_number=number,
    )
