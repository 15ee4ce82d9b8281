"""Partitions: key hashing (murmur3 seed 31, vectors of docs/protocol.md §6.6), explicit numbers,
round
robin, and the consumer side of each; the stream a message landed in is read on the broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mmh3
import pytest

from tests.support.probe import BrokerProbe, Recorder

WAIT = 0.3

# docs/protocol.md §6.6: (key, unsigned murmur3 x86_32 seed 31) and, for the list
# [1, 2, 3], the partition list[hash % 3].
VECTORS = [
    ("a", 3387765255, 1),
    ("key", 2580712894, 2),
    ("hello", 168865661, 3),
    ("2ndPartition", 122197930, 2),
    ("user-123", 2515423711, 2),
    ("partition-key", 1320671953, 2),
]


def _counts(probe: BrokerProbe, station: str, n: int) -> list[int]:
    return [probe.message_count(station, p) for p in range(1, n + 1)]


def test_vectors_are_consistent_with_mmh3() -> None:
    for key, hashed, partition in VECTORS:
        assert mmh3.hash(key, 31, signed=False) == hashed
        assert [1, 2, 3][hashed % 3] == partition


@pytest.mark.parametrize(("key", "partition"), [(k, p) for k, _h, p in VECTORS])
def test_partition_key_routes_like_the_go_sdk(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str], key: str, partition: int
) -> None:
    station = name("st")
    producer = conn.create_station(station, partitions_number=3).create_producer("p")
    for i in range(3):
        producer.produce(f"{key}-{i}".encode(), partition_key=key)
    expected = [0, 0, 0]
    expected[partition - 1] = 3
    assert _counts(probe, station, 3) == expected


def test_partition_key_matches_mmh3_for_many_keys(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    n = 5
    producer = conn.create_station(station, partitions_number=n).create_producer("p")
    expected = [0] * n
    for i in range(40):
        key = f"customer-{i}"
        producer.produce(b"x", partition_key=key, async_produce=True)
        expected[mmh3.hash(key, 31, signed=False) % n] += 1
    producer.flush()
    assert _counts(probe, station, n) == expected


def test_partition_number(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_station(station, partitions_number=3).create_producer("p")
    producer.produce(b"x", partition_number=3)
    producer.produce(b"y", partition_number=3)
    producer.produce(b"z", partition_number=1)
    assert _counts(probe, station, 3) == [1, 0, 2]


@pytest.mark.parametrize("number", [4, 0, -1])
def test_partition_number_out_of_range(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str], number: int
) -> None:
    station = name("st")
    producer = conn.create_station(station, partitions_number=3).create_producer("p")
    with pytest.raises(memphis.LocalProtocolError, match=r"^Partition number is out of range$"):
        producer.produce(b"x", partition_number=number)
    assert _counts(probe, station, 3) == [0, 0, 0]


def test_partition_key_and_number_together_is_an_error(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    st = conn.create_station(station, partitions_number=3)
    producer = st.create_producer("p")
    with pytest.raises(
        memphis.LocalProtocolError, match=r"^Can not use both partition number and partition key$"
    ):
        producer.produce(b"x", partition_key="key", partition_number=2)
    assert _counts(probe, station, 3) == [0, 0, 0]
    consumer = st.create_consumer("c", batch_max_wait_time=WAIT)
    with pytest.raises(
        memphis.LocalProtocolError, match=r"^can not use both partition number and partition key$"
    ):
        consumer.fetch(partition_key="key", partition_number=2)


def test_round_robin_without_key_or_number(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_station(station, partitions_number=3).create_producer("p")
    seen = []
    for _ in range(6):
        producer.produce(b"rr")
        seen.append(_counts(probe, station, 3))
    # Starts at the first partition and cycles in list order (docs/protocol.md §6.4 step 3).
    assert seen == [
        [1, 0, 0], [1, 1, 0], [1, 1, 1], [2, 1, 1], [2, 2, 1], [2, 2, 2],
    ]


def test_single_partition_ignores_key_and_number(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_station(station).create_producer("p")
    producer.produce(b"a", partition_key="hello")
    producer.produce(b"b", partition_number=1)
    assert probe.message_count(station) == 2


def test_fetch_by_partition_key_and_number(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = conn.create_station(name("st"), partitions_number=3)
    producer = station.create_producer("p")
    producer.produce(b"to-2", partition_key="key")  # partition 2
    producer.produce(b"to-3", partition_key="hello")  # partition 3
    producer.produce(b"to-1", partition_number=1)
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT)
    assert [m.data for m in consumer.fetch(partition_key="hello")] == [b"to-3"]
    assert [m.data for m in consumer.fetch(partition_number=2)] == [b"to-2"]
    assert [m.data for m in consumer.fetch(partition_key="a")] == [b"to-1"]
    for p in (1, 2, 3):
        assert consumer.fetch(partition_number=p) == []


def test_fetch_round_robins_over_partitions(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = conn.create_station(name("st"), partitions_number=3)
    producer = station.create_producer("p")
    for p in (1, 2, 3):
        producer.produce(f"p{p}".encode(), partition_number=p)
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT)
    got = []
    for _ in range(3):
        batch = consumer.fetch()
        for m in batch:
            m.ack()
        got += [m.data for m in batch]
    assert sorted(got) == [b"p1", b"p2", b"p3"]


def test_fetch_partition_number_out_of_range(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    station = conn.create_station(name("st"), partitions_number=2)
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT)
    with pytest.raises(memphis.LocalProtocolError, match=r"^Partition number is out of range$"):
        consumer.fetch(partition_number=3)


def test_sequence_numbers_are_per_partition(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = conn.create_station(name("st"), partitions_number=2)
    producer = station.create_producer("p")
    for i in range(4):
        producer.produce(f"{i}".encode())  # round robin: 0,2 -> p1; 1,3 -> p2
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT)
    p1 = consumer.fetch(partition_number=1)
    p2 = consumer.fetch(partition_number=2)
    assert [(m.data, m.sequence_number) for m in p1] == [(b"0", 1), (b"2", 2)]
    assert [(m.data, m.sequence_number) for m in p2] == [(b"1", 1), (b"3", 2)]


def test_consume_with_partition_key(conn: Any, name: Callable[[str], str]) -> None:
    station = conn.create_station(name("st"), partitions_number=3)
    producer = station.create_producer("p")
    producer.produce(b"for-3", partition_key="hello")
    producer.produce(b"for-2", partition_key="key")
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT, pull_interval=0.05)
    rec = Recorder()

    def handler(msgs: list[Any], error: Any, context: Any) -> None:
        for m in msgs:
            m.ack()
            rec(m.data)

    consumer.consume(handler, partition_key="hello")
    try:
        rec.wait_for(lambda calls: len(calls) >= 1)
    finally:
        consumer.stop_consume()
    assert [c[0] for c in rec.calls] == [b"for-3"]
    # The consume loop never pulled partition 2: its message is still there.
    assert [m.data for m in consumer.fetch(partition_number=2)] == [b"for-2"]


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_msg_id_is_stored_once_whatever_the_partition_count(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str], partitions: int
) -> None:
    # Report: the same msg_id produced 3 times on 3 partitions was stored 3 times, since round
    # robin sent each retry to another partition's stream (docs/protocol.md §6.5).
    station = name("st")
    producer = conn.create_station(station, partitions_number=partitions).create_producer("p")
    for _ in range(3):
        producer.produce(b"once", msg_id="order-1")
    assert sum(_counts(probe, station, partitions)) == 1


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_a_partition_number_the_station_lacks_is_refused_whatever_the_count(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: 9 on a 3-partition station raised, 5 on a 1-partition station was ignored.
    one = conn.create_station(name("one"))
    three = conn.create_station(name("three"), partitions_number=3)
    for station, number in ((one, 5), (three, 9)):
        producer = station.create_producer("p")
        with pytest.raises(memphis.LocalProtocolError, match="Partition number is out of range"):
            producer.produce(b"x", partition_number=number)
