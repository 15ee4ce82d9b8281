"""Partition hashing and choice (docs/protocol.md §6.4, §5, §6.6)."""

from __future__ import annotations

import mmh3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memphis_core import LocalProtocolError
from memphis_core.memphis._partitions import (
    RoundRobin,
    choose_partition,
    murmur3_32,
    partition_for_key,
    produce_subject,
    stream_name,
)

# docs/protocol.md §6.6 test vectors (seed 31, unsigned).
VECTORS_SEED_31 = [
    ("a", 3387765255),
    ("key", 2580712894),
    ("hello", 168865661),
    ("2ndPartition", 122197930),
    ("user-123", 2515423711),
    ("partition-key", 1320671953),
]


@pytest.mark.parametrize(("key", "expected"), VECTORS_SEED_31)
def test_reference_vectors(key: str, expected: int) -> None:
    assert murmur3_32(key.encode()) == expected


def test_reference_partition_examples() -> None:
    # docs/protocol.md §6.6: with [1,2,3], "key" -> index 1 -> partition 2; "hello" -> index 2 -> 3.
    assert partition_for_key("key", [1, 2, 3]) == 2
    assert partition_for_key("hello", [1, 2, 3]) == 3


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        # Standard MurmurHash3_x86_32 vectors (cover the empty input, each tail length, seeds).
        (b"", 0, 0),
        (b"", 1, 0x514E28B7),
        (b"", 0xFFFFFFFF, 0x81F16F39),
        (b"\xff\xff\xff\xff", 0, 0x76293B50),
        (b"\x21\x43\x65\x87", 0, 0xF55B516B),
        (b"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE),
        (b"\x21\x43\x65", 0, 0x7E4A8634),
        (b"\x21\x43", 0, 0xA0F7B07A),
        (b"\x21", 0, 0x72661CF4),
        (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
        (b"Hello, world!", 1234, 0xFAF6CDB3),
        (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_standard_vectors(data: bytes, seed: int, expected: int) -> None:
    assert murmur3_32(data, seed) == expected


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**32 - 1))
def test_matches_mmh3_bytes(data: bytes, seed: int) -> None:
    assert murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)


@given(st.text(max_size=80))
def test_matches_mmh3_str_seed_31(key: str) -> None:
    # memphis-py routes keys with exactly this call.
    assert murmur3_32(key.encode("utf-8")) == mmh3.hash(key, 31, signed=False)


@given(st.text(min_size=1, max_size=40), st.lists(st.integers(1, 50), min_size=1, max_size=12))
def test_partition_for_key_indexes_the_list(key: str, partitions: list[int]) -> None:
    expected = partitions[mmh3.hash(key, 31, signed=False) % len(partitions)]
    assert partition_for_key(key, partitions) == expected


def test_partition_for_key_empty_list() -> None:
    with pytest.raises(LocalProtocolError, match=r"^failed to get partition from key$"):
        partition_for_key("k", [])


def test_round_robin_starts_at_zero_and_wraps() -> None:
    rr = RoundRobin()
    assert [rr.next([4, 5, 6]) for _ in range(7)] == [4, 5, 6, 4, 5, 6, 4]


def test_round_robin_survives_shorter_list() -> None:
    rr = RoundRobin()
    for _ in range(5):
        rr.next([1, 2, 3, 4, 5, 6])
    assert rr.next([1, 2]) in (1, 2)


def test_round_robin_per_object() -> None:
    a, b = RoundRobin(), RoundRobin()
    assert a.next([1, 2]) == 1
    assert a.next([1, 2]) == 2
    assert b.next([1, 2]) == 1


def test_round_robin_empty() -> None:
    with pytest.raises(LocalProtocolError):
        RoundRobin().next([])


class TestChoosePartition:
    def test_legacy_station(self) -> None:
        assert choose_partition([], rr=RoundRobin(), station="s") is None
        assert choose_partition([], key="k", rr=RoundRobin(), station="s", fetch=True) is None

    def test_single_partition_takes_any_key_and_only_its_own_number(self) -> None:
        rr = RoundRobin()
        assert choose_partition([1], key="k", rr=rr, station="s") == 1
        assert choose_partition([1], number=1, rr=rr, station="s") == 1
        assert choose_partition([1], rr=rr, station="s") == 1
        # Field report: 9 on a 3-partition station raised, 5 on a 1-partition one was ignored.
        # Both are refused now (the Go SDK ignores the number on one partition).
        with pytest.raises(LocalProtocolError, match=r"^Partition number is out of range$"):
            choose_partition([1], number=5, rr=rr, station="s")
        with pytest.raises(LocalProtocolError, match=r"^Partition number is out of range$"):
            choose_partition([1, 2, 3], number=9, rr=rr, station="s")

    def test_both(self) -> None:
        with pytest.raises(
            LocalProtocolError, match=r"^Can not use both partition number and partition key$"
        ):
            choose_partition([1, 2], key="k", number=1, rr=RoundRobin(), station="s")

    def test_both_consumer_lowercase(self) -> None:
        with pytest.raises(
            LocalProtocolError, match=r"^can not use both partition number and partition key$"
        ):
            choose_partition([1, 2], key="k", number=1, rr=RoundRobin(), station="s", fetch=True)

    def test_empty_key_means_unset(self) -> None:
        # Go's "unset" key is "", so "" + a number is not a conflict.
        assert choose_partition([1, 2, 3], key="", number=3, rr=RoundRobin(), station="s") == 3

    def test_key(self) -> None:
        assert choose_partition([1, 2, 3], key="key", rr=RoundRobin(), station="s") == 2
        assert (
            choose_partition([1, 2, 3], key="hello", rr=RoundRobin(), station="s", fetch=True) == 3
        )

    @pytest.mark.parametrize("number", [0, -1, 4, 100])
    def test_number_out_of_range(self, number: int) -> None:
        with pytest.raises(LocalProtocolError, match=r"^Partition number is out of range$"):
            choose_partition([1, 2, 3], number=number, rr=RoundRobin(), station="s")

    def test_number_not_in_list(self) -> None:
        with pytest.raises(
            LocalProtocolError, match=r"^Partition 2 does not exist in station my#st$"
        ):
            choose_partition([1, 3, 5], number=2, rr=RoundRobin(), station="my#st")

    def test_number_ok(self) -> None:
        assert choose_partition([1, 2, 3], number=3, rr=RoundRobin(), station="s") == 3

    def test_bool_is_not_a_number(self) -> None:
        with pytest.raises(LocalProtocolError):
            choose_partition([1, 2], number=True, rr=RoundRobin(), station="s")

    def test_round_robin_when_unset(self) -> None:
        rr = RoundRobin()
        got = [choose_partition([1, 2, 3], rr=rr, station="s") for _ in range(4)]
        assert got == [1, 2, 3, 1]
        # Key/number choices do not advance the round robin.
        choose_partition([1, 2, 3], key="x", rr=rr, station="s")
        assert choose_partition([1, 2, 3], rr=rr, station="s") == 2

    def test_a_msg_id_chooses_like_a_key(self) -> None:
        # JetStream de-duplicates per stream: every retry of one id must reach the same partition,
        # whatever the round robin's position (docs/protocol.md §6.5).
        rr = RoundRobin()
        for key in ("a", "key", "hello", "order-17"):
            chosen = {choose_partition([1, 2, 3], rr=rr, station="s", msg_id=key) for _ in range(4)}
            assert chosen == {partition_for_key(key, [1, 2, 3])}
        assert choose_partition([1, 2, 3], rr=rr, station="s") == 1  # not advanced by ids

    def test_key_and_number_win_over_a_msg_id(self) -> None:
        rr = RoundRobin()
        assert choose_partition([1, 2, 3], key="key", rr=rr, station="s", msg_id="a") == 2
        assert choose_partition([1, 2, 3], number=3, rr=rr, station="s", msg_id="a") == 3


def test_stream_and_subject() -> None:
    assert stream_name("orders", 2) == "orders$2"
    assert stream_name("orders", None) == "orders"
    assert produce_subject("orders", 2) == "orders$2.final"
    assert produce_subject("orders", None) == "orders.final"
    assert produce_subject("orders", 2, {2: 17}) == "orders$2.functions.17"
    assert produce_subject("orders", 1, {2: 17}) == "orders$1.final"
