"""Partition choice for producers and consumers (docs/protocol.md §6.4, §5, §6.6).

Everything here is pure: the caller passes the partitions list received in the creation reply
(``partitions_update.partitions_list``) and gets back the partition *number* to use.

Partition keys are hashed with MurmurHash3 x86 32-bit, seed 31, unsigned, over the key's UTF-8
bytes, and the partition is ``partitions[hash % len(partitions)]`` (docs/protocol.md §6.6). This
must agree bit-for-bit with the Go SDK (``murmur3.New32WithSeed(31)``) and memphis-py
(``mmh3.hash(key, 31, signed=False)``), otherwise two SDKs would route one key to two partitions
and per-key ordering would silently break. The implementation below is written from the published
algorithm description; it needs no C extension, so ``memphis_core`` stays stdlib-only.

Return convention: ``None`` means a *legacy* station (created before partitions existed, empty
partitions list), whose stream is ``<internal>`` with subject ``<internal>.final``
(docs/protocol.md §5.8).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final

from memphis_core.nats._errors import LocalProtocolError

__all__ = [
    "PARTITION_KEY_SEED",
    "RoundRobin",
    "choose_partition",
    "murmur3_32",
    "partition_for_key",
    "produce_subject",
    "stream_name",
]

#: Seed used by every Memphis SDK since 2023-09 (it was 1234 before; docs/protocol.md §6.6).
PARTITION_KEY_SEED: Final = 31

_MASK: Final = 0xFFFFFFFF
_C1: Final = 0xCC9E2D51
_C2: Final = 0x1B873593
_BLOCKS: Final = struct.Struct("<I")


def murmur3_32(data: bytes, seed: int = PARTITION_KEY_SEED) -> int:
    """Return the unsigned MurmurHash3 x86 32-bit hash of ``data``.

    Args:
        data: The bytes to hash (a partition key is hashed as its UTF-8 encoding).
        seed: The 32-bit seed; taken modulo 2**32 so negative seeds behave like C's ``uint32_t``.

    Returns:
        An int in ``range(2**32)``.
    """
    # Every step is masked to 32 bits: Python ints do not wrap, and the hash must equal the C and Go
    # implementations' ``uint32`` arithmetic bit for bit.
    h = seed & _MASK
    length = len(data)
    body = length & ~3
    # Whole 4-byte blocks, little-endian. ``iter_unpack`` avoids a per-byte Python loop.
    for (block,) in _BLOCKS.iter_unpack(memoryview(data)[:body]):
        k = (block * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    # The 1..3 trailing bytes are mixed as one little-endian word, without the h-rotation step.
    if length & 3:
        # Little-endian regardless of the machine: the reference implementation reads the tail bytes
        # in that order, and so do the Go and Python SDKs.
        k = int.from_bytes(data[body:], "little")
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
    # Finalisation ("fmix32"): force every input bit to affect every output bit.
    # The length is mixed in as a 32-bit value: keys over 4 GiB are not realistic, but the mask
    # keeps the arithmetic identical to C's anyway.
    h ^= length & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def partition_for_key(key: str, partitions: Sequence[int]) -> int:
    """Return the partition a partition key maps to: ``partitions[murmur3_32(key) % len]``.

    The list is indexed, not the partition numbers themselves (docs/protocol.md §6.6), so with
    ``[1, 2, 3]`` the result is ``index + 1``.

    Raises:
        LocalProtocolError: ``partitions`` is empty (``failed to get partition from key``), or
            ``key`` is not a ``str``.
    """
    if not isinstance(key, str):
        raise LocalProtocolError("partition key must be a str")
    if not partitions:
        raise LocalProtocolError("failed to get partition from key")
    # Indexing the list (rather than ``hash % n + 1``) keeps keys stable for a station whose list is
    # not ``[1..n]``, and is what the Go SDK and memphis-py do (docs/protocol.md §6.6).
    return partitions[murmur3_32(key.encode("utf-8")) % len(partitions)]


class RoundRobin:
    """Per-producer (or per-consumer) round robin over a partitions list (docs/protocol.md §6.4
    step 2).

    Starts at index 0 and walks the list in the order received. The index is kept modulo the
    current length, so a shorter list after a new creation reply cannot index out of range.
    Not thread-safe by itself; the session owns one per producer and is single-threaded.
    """

    __slots__ = ("_index",)

    def __init__(self) -> None:
        self._index = 0

    def next(self, partitions: Sequence[int]) -> int:
        """Return the next partition number from ``partitions`` and advance.

        Raises:
            LocalProtocolError: ``partitions`` is empty.
        """
        if not partitions:
            raise LocalProtocolError("no partitions to choose from")
        index = self._index % len(partitions)
        # Per producer, not shared: two producers on one station each start at the first partition,
        # as the Go SDK's do (docs/protocol.md §6.2).
        self._index = (index + 1) % len(partitions)
        return partitions[index]


def _validate_number(number: object, partitions: Sequence[int], station: str) -> int:
    # docs/protocol.md §6.4: first a range check against the *count*, then membership in the
    # list. The two texts differ and users match on them, so keep both checks in this order.
    # ``bool`` is an ``int`` subclass: ``partition_number=True`` would otherwise read as 1.
    if isinstance(number, bool) or not isinstance(number, int):
        raise LocalProtocolError("partition number must be an int")
    if number < 1 or number > len(partitions):
        raise LocalProtocolError("Partition number is out of range")
    if number not in partitions:
        raise LocalProtocolError(f"Partition {number} does not exist in station {station}")
    return number


#: The Go SDK words the both-set error differently for producers and consumers, and users match
#: on the text, so both spellings are kept.
_BOTH_PRODUCE: Final = "Can not use both partition number and partition key"
_BOTH_FETCH: Final = "can not use both partition number and partition key"


def choose_partition(
    partitions: Sequence[int],
    *,
    key: str | None = None,
    number: int | None = None,
    rr: RoundRobin,
    station: str,
    fetch: bool = False,
    msg_id: str | None = None,
) -> int | None:
    """Choose the partition a producer publishes to, or (``fetch``) a consumer pulls from.

    A partition number the station does not have is refused even on a one-partition station
    (the Go SDK ignores it there; docs/protocol.md §6.4 lists the checks).

    Args:
        partitions: ``partitions_update.partitions_list`` from the creation reply.
        key: Partition key, hashed with :func:`partition_for_key`; ``None`` or ``""`` = unset.
        number: Explicit partition number (1-based); ``None`` = unset.
        rr: The producer's or consumer's :class:`RoundRobin`, used when neither is given.
        station: Internal station name, only used in the error text.
        fetch: choose for a consumer; only the both-set error text differs (lower-case ``c``).
        msg_id: The message id of a produce; with neither ``key`` nor ``number`` it is hashed
            like a partition key instead of taking the next round-robin partition.

    Returns:
        The partition number, or ``None`` for a legacy station (empty list: the single stream
        ``<internal>``, which the Go SDK stores as partition 1).

    Raises:
        LocalProtocolError: ``Can not use both partition number and partition key`` (consumers:
            ``can not ...``), ``Partition number is out of range``, ``Partition <n> does not
            exist in station <internal>`` (only checked when the station has more than one
            partition).
    """
    # An empty list is a legacy station (docs/protocol.md §5.8): one stream, no partition to choose,
    # so key and number are ignored, as the Go SDK ignores them.
    if not partitions:
        return None
    # The number as given, for ``_validate_number``'s bool test: compiled with mypyc
    # (docs/compiled.md), ``number`` narrowed to ``int`` below is unboxed, and ``True`` becomes 1.
    given: object = number
    # Go uses "" and -1 as "unset"; here None is unset and "" keeps Go's meaning.
    # Checked before the one-partition shortcut, so the error does not depend on how many partitions
    # the station happens to have (docs/protocol.md §6.4).
    if key and number is not None:
        raise LocalProtocolError(_BOTH_FETCH if fetch else _BOTH_PRODUCE)
    if len(partitions) == 1:
        # Deliberately stricter than Go, which ignores a number on a one-partition station:
        # a number the station does not have is refused however many partitions it has.
        if number is not None:
            _validate_number(given, partitions, station)
        return partitions[0]
    if key:
        return partition_for_key(key, partitions)
    if number is not None:
        return _validate_number(given, partitions, station)
    if msg_id:
        # JetStream de-duplicates per stream, and each partition is a stream: a retry sent round
        # robin to another partition would be stored again. Hashing the id sends every retry to
        # the same stream (docs/protocol.md §6.6); the official SDKs use round robin here.
        return partition_for_key(msg_id, partitions)
    return rr.next(partitions)


def stream_name(internal: str, partition: int | None) -> str:
    """Return the stream of a partition: ``<internal>$<p>``, or ``<internal>`` when legacy."""
    return internal if partition is None else f"{internal}${partition}"


def produce_subject(
    internal: str, partition: int | None, functions: Mapping[int, int] | None = None
) -> str:
    """Return the subject a message is published on (docs/protocol.md §6.4 step 3).

    ``<stream>.functions.<id>`` when the station's functions map (docs/protocol.md §4.3, cloud
    only) has an entry for the partition, else ``<stream>.final``.
    """
    stream = stream_name(internal, partition)
    # The open-source broker always sends an empty map (docs/protocol.md §4.3), so this branch is
    # only taken against Memphis Cloud; the test keeps the common path to one check.
    if functions and partition is not None and partition in functions:
        return f"{stream}.functions.{functions[partition]}"
    return f"{stream}.final"
