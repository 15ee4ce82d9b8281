"""Small argument checkers shared by every option builder in ``_options``.

Each returns the value in canonical form or raises ``LocalProtocolError`` naming the argument.
``bool`` is an ``int`` subclass in Python; accepting ``True`` as "1 partition" would hide bugs,
so the integer checks refuse it.
"""

from __future__ import annotations

import math

from memphis_core.nats._errors import LocalProtocolError

from ._names import name_error

__all__ = [
    "check_bool",
    "check_int",
    "check_partition",
    "check_seconds",
    "check_str",
    "checked_name",
]


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
    """A duration in float seconds : finite, ``>= 0`` (``> 0`` if positive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LocalProtocolError(f"{what} must be a number of seconds, not {type(value).__name__}")
    # Durations are floats in seconds everywhere in the API; the wire units (ms in Memphis bodies,
    # ns in JetStream ones) are applied only where a body is encoded (docs/protocol.md §0.2).
    seconds = float(value)
    # ``inf`` and ``nan`` are refused: they would become absurd integers (or an exception) when
    # turned into milliseconds or nanoseconds on the wire.
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise LocalProtocolError(f"{what} must be {bound} seconds, not {value!r}")
    return seconds


def checked_name(name: object, kind: str, what: str) -> str:
    """A station/producer/consumer name the broker would accept, as given."""
    # The broker lower-cases station/producer/consumer names before validating them
    # (docs/protocol.md §5.1), so we do the same to produce the same verdict.
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
    # An empty key means "no key", as in the Go SDK where "" is the unset value.
    return (key or None), number
