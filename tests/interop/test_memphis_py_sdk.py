"""memphis-py 1.3.1 ↔ our SDK (memphis_sync) on the same stations.

* Payload bytes and user headers survive in both directions; our SDK hides ``$memphis*``
  headers (and its ``Nats-Msg-Id`` transport copy) while memphis-py shows every header.
* Consumer groups are shared: the two SDKs split one durable.
* Partition keys route to the same partition (MurmurHash3 x86_32, seed 31, unsigned).
* Idempotency, exactly as it behaves on this broker (stock JetStream, which deduplicates on
  ``Nats-Msg-Id`` only, within the stream's ``duplicate_window`` = the idempotency window):

  ====================================  ==========================================
  first produce                          second produce, same id → stored?
  ====================================  ==========================================
  our SDK ``msg_id=X``                   our SDK ``msg_id=X``: no (deduplicated)
  memphis-py ``msg_id=X``                memphis-py ``msg_id=X``: yes (#11: it sends
                                         only ``msg-id``, ignored by stock JetStream)
  our SDK ``msg_id=X``                   memphis-py ``msg_id=X``: yes
  memphis-py ``msg_id=X``                our SDK ``msg_id=X``: yes
  memphis-py ``msg_id=X`` + header       our SDK ``msg_id=X``: no, and vice versa
  ``Nats-Msg-Id: X``
  ====================================  ==========================================

  So cross-SDK de-duplication happens in neither direction with plain ``msg_id``; it does in
  both once memphis-py also sets ``Nats-Msg-Id`` itself. On the real Memphis broker (whose
  JetStream fork keys on ``msg-id``) the plain rows would dedup too; that broker is not tested
  here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memphis import Headers
from nats.js import JetStreamContext

import memphis_sync
from memphis_broker import EmbeddedBroker
from memphis_core.memphis._partitions import murmur3_32
from tests.support.interop import (
    produced_headers,
    run_memphis_py,
    sdk_consumer,
    stream_messages,
    stream_of,
    wait_acked,
)
from tests.support.waits import poll

pytestmark = pytest.mark.memphis_py_defect(1, 2)

BINARY = bytes(range(256))


def _py_headers(pairs: dict[str, str]) -> Headers:
    headers = Headers()
    for key, value in pairs.items():
        headers.add(key, value)
    return headers


# ------------------------------------------------------------------------------ payloads, headers


def test_memphis_py_to_sdk_identical_bytes_and_user_headers(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    consumer = sdk_consumer(sdk, station)
    payloads: list[Any] = [
        bytearray(BINARY),
        bytearray(b"\x00\r\n\r\nNATS/1.0\r\n"),
        {"k": [1, "é"], "n": None},
        "héllo ☃",
    ]
    expected = [
        BINARY,
        b"\x00\r\n\r\nNATS/1.0\r\n",
        json.dumps(payloads[2]).encode(),
        "héllo ☃".encode(),
    ]

    async def body(m: Any, js: JetStreamContext) -> list[dict[str, str]]:
        producer = await m.producer(station_name=station, producer_name="py-p")
        for i, payload in enumerate(payloads):
            headers = _py_headers({"trace": f"t{i}", "Mixed-Case": "V a:l"})
            await producer.produce(payload, headers=headers, msg_id=f"py-{i}")
        await producer.produce(bytearray(b"bare"))
        return [s.headers for s in await stream_messages(js, stream_of(station))]

    stored_headers = run_memphis_py(broker, body)
    # The $memphis headers are on the wire: hiding them is the consumer's job.
    assert all(h["$memphis_producedBy"] == "py-p" for h in stored_headers)
    assert all("$memphis_connectionId" in h for h in stored_headers)

    msgs = consumer.fetch(batch_size=len(payloads) + 1)
    assert [m.data for m in msgs] == [*expected, b"bare"]
    assert [m.sequence_number for m in msgs] == [1, 2, 3, 4, 5]
    assert [m.headers for m in msgs] == [
        # msg-id is the SDK's idempotency header, not a user header (docs/protocol.md §7.14).
        *({"trace": f"t{i}", "Mixed-Case": "V a:l"} for i in range(4)),
        {},
    ]
    for m in msgs:
        m.ack()


def test_sdk_to_memphis_py_identical_bytes_and_headers(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station, group = name("st"), name("cg")
    producer = sdk.create_station(station).create_producer("sdk-p")
    payloads: list[bytes] = [BINARY, b"", b"\x00\r\n\r\nNATS/1.0\r\n", "héllo ☃".encode()]
    for i, payload in enumerate(payloads):
        ack = producer.produce(
            payload, headers={"trace": f"t{i}", "Mixed-Case": "V a:l"}, msg_id=f"sdk-{i}"
        )
        assert ack is not None
        assert ack.sequence == i + 1
    producer.produce({"k": [1, "é"]})
    conn_id = sdk.connection_id

    async def body(m: Any, js: JetStreamContext) -> None:
        consumer = await m.consumer(
            station_name=station, consumer_name="py-c", consumer_group=group
        )
        msgs = await consumer.fetch(batch_size=10)
        assert [bytes(x.get_data()) for x in msgs[:4]] == payloads
        assert json.loads(bytes(msgs[4].get_data())) == {"k": [1, "é"]}
        for i, x in enumerate(msgs[:4]):
            assert x.get_headers() == produced_headers(
                conn_id, f"sdk-{i}", {"trace": f"t{i}", "Mixed-Case": "V a:l"}
            )
        assert msgs[4].get_headers() == produced_headers(conn_id)
        assert [x.get_sequence_number() for x in msgs] == [1, 2, 3, 4, 5]
        for x in msgs:
            await x.ack()

        await wait_acked(js, stream_of(station), group, 5, "memphis-py acks")

    run_memphis_py(broker, body)


def test_consumer_group_shared_between_sdks(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station, group = name("st"), name("cg")
    sdk.create_station(station)
    ours = sdk.create_consumer(station, "sdk-member", consumer_group=group)
    producer = sdk.create_producer(station, "sdk-p")
    for i in range(6):
        producer.produce(b"m%d" % i)
    first = ours.fetch(batch_size=3)
    assert [m.data for m in first] == [b"m0", b"m1", b"m2"]
    for m in first:
        m.ack()

    async def body(m: Any, js: JetStreamContext) -> None:
        theirs = await m.consumer(
            station_name=station, consumer_name="py-member", consumer_group=group
        )
        rest = await theirs.fetch(batch_size=10)
        assert [bytes(x.get_data()) for x in rest] == [b"m3", b"m4", b"m5"]
        for x in rest:
            await x.ack()

        await wait_acked(js, stream_of(station), group, 6, "both SDKs' acks on one durable")

    run_memphis_py(broker, body)


# ------------------------------------------------------------------------------ partition keys

KEYS = [
    *(f"user-{i}" for i in range(24)),
    "a",
    "ab",
    "abc",
    "abcd",
    "ключ",
    "🙂",
    "x" * 301,
    "order.eu#1",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_partition_hash_matches_mmh3_seed_31(key: str) -> None:
    # surrogates are not UTF-8 encodable in either SDK; mmh3 would hash them differently
    try:
        data = key.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert murmur3_32(data) == mmh3.hash(key, 31, signed=False)


def test_partition_keys_route_to_the_same_partition(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    sdk.create_station(station, partitions_number=3)
    producer = sdk.create_producer(station, "sdk-p")
    for key in KEYS:
        producer.produce(f"sdk:{key}".encode(), partition_key=key)

    async def body(m: Any, js: JetStreamContext) -> dict[int, list[bytes]]:
        py_producer = await m.producer(station_name=station, producer_name="py-p")
        for key in KEYS:
            await py_producer.produce(f"py:{key}", producer_partition_key=key)
        return {
            p: [s.data for s in await stream_messages(js, stream_of(station, p))] for p in (1, 2, 3)
        }

    by_partition = run_memphis_py(broker, body)
    where: dict[str, dict[str, int]] = {"sdk": {}, "py": {}}
    for p, bodies in by_partition.items():
        for raw in bodies:
            side, key = raw.decode().split(":", 1)
            where[side][key] = p
    expected = {key: [1, 2, 3][mmh3.hash(key, 31, signed=False) % 3] for key in KEYS}
    assert where["py"] == expected
    assert where["sdk"] == expected
    assert set(expected.values()) == {1, 2, 3}  # the key set exercises every partition

    # Consumer side: a fetch by key reads the partition the key maps to, in both SDKs.
    probe = {p: next(k for k in KEYS if expected[k] == p) for p in (1, 2, 3)}
    ours = sdk.create_consumer(station, "sdk-by-key", batch_max_wait_time=1.0)
    for p, key in probe.items():
        want = by_partition[p]
        got = ours.fetch(batch_size=len(want), partition_key=key)
        assert [m.data for m in got] == want
        assert {m.partition for m in got} == {p}
        for msg in got:
            msg.ack()

    async def py_fetch(m: Any, js: JetStreamContext) -> None:
        theirs = await m.consumer(station_name=station, consumer_name="py-by-key")
        for p, key in probe.items():
            got = await theirs.fetch(batch_size=100, consumer_partition_key=key)
            assert [bytes(x.get_data()) for x in got] == by_partition[p]
            for x in got:
                await x.ack()

    run_memphis_py(broker, py_fetch)


# ------------------------------------------------------------------------------ idempotency


def _count(broker: EmbeddedBroker, station: str) -> int:
    async def body(m: Any, js: JetStreamContext) -> int:
        return len(await stream_messages(js, stream_of(station)))

    return run_memphis_py(broker, body)


def _py_produce(broker: EmbeddedBroker, station: str, msg_id: str, nats_id: bool) -> None:
    async def body(m: Any, js: JetStreamContext) -> None:
        producer = await m.producer(station_name=station, producer_name="py-p")
        headers = _py_headers({"Nats-Msg-Id": msg_id}) if nats_id else None
        await producer.produce(bytearray(b"py"), headers=headers, msg_id=msg_id)

    run_memphis_py(broker, body)


def _produce_x_from_both(
    broker: EmbeddedBroker,
    sdk: memphis_sync.Connection,
    station: str,
    sdk_first: bool,
    nats_id: bool,
) -> Any:
    """Produce ``msg_id`` X to a new ``station`` from our SDK (``b"sdk"``) and from memphis-py
    (``b"py"``, with ``Nats-Msg-Id`` too if ``nats_id``), in the order given; our SDK's ack."""
    producer = sdk.create_station(station).create_producer("sdk-p")
    if sdk_first:
        ack = producer.produce(b"sdk", msg_id="X")
        _py_produce(broker, station, "X", nats_id=nats_id)
    else:
        _py_produce(broker, station, "X", nats_id=nats_id)
        ack = producer.produce(b"sdk", msg_id="X")
    assert ack is not None
    return ack


def test_sdk_msg_id_dedups_its_own_repeat(
    sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = sdk.create_station(station).create_producer("sdk-p")
    first = producer.produce(b"one", msg_id="X")
    again = producer.produce(b"two", msg_id="X")
    assert first is not None
    assert again is not None
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.sequence == first.sequence


@pytest.mark.memphis_py_defect(11)
def test_memphis_py_msg_id_alone_is_not_deduplicated_by_stock_jetstream(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    sdk.create_station(station)
    _py_produce(broker, station, "X", nats_id=False)
    _py_produce(broker, station, "X", nats_id=False)
    assert _count(broker, station) == 2


@pytest.mark.memphis_py_defect(11)
@pytest.mark.parametrize("sdk_first", [True, False], ids=["sdk-then-py", "py-then-sdk"])
def test_plain_msg_id_does_not_dedup_across_sdks(
    broker: EmbeddedBroker,
    sdk: memphis_sync.Connection,
    name: Callable[[str], str],
    sdk_first: bool,
) -> None:
    station = name("st")
    ack = _produce_x_from_both(broker, sdk, station, sdk_first, nats_id=False)
    assert not ack.duplicate
    assert _count(broker, station) == 2


@pytest.mark.parametrize("sdk_first", [True, False], ids=["sdk-then-py", "py-then-sdk"])
def test_msg_id_dedups_across_sdks_when_memphis_py_sets_nats_msg_id(
    broker: EmbeddedBroker,
    sdk: memphis_sync.Connection,
    name: Callable[[str], str],
    sdk_first: bool,
) -> None:
    station = name("st")
    ack = _produce_x_from_both(broker, sdk, station, sdk_first, nats_id=True)
    assert ack.duplicate is not sdk_first  # the second of the two is the duplicate
    want = b"sdk" if sdk_first else b"py"

    async def body(m: Any, js: JetStreamContext) -> list[bytes]:
        return [s.data for s in await stream_messages(js, stream_of(station))]

    assert run_memphis_py(broker, body) == [want]


def test_cross_sdk_dedup_holds_only_within_the_idempotency_window(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    # Long enough that memphis-py's connect + first produce land inside it on a loaded CI box.
    producer = sdk.create_station(station, idempotency_window=4.0).create_producer("sdk-p")
    ack = producer.produce(b"sdk", msg_id="W")
    assert ack is not None

    async def body(m: Any, js: JetStreamContext) -> int:
        py_producer = await m.producer(station_name=station, producer_name="py-p")
        headers = _py_headers({"Nats-Msg-Id": "W"})
        await py_producer.produce(bytearray(b"py"), headers=headers, msg_id="W")
        assert len(await stream_messages(js, stream_of(station))) == 1  # inside the window

        async def stored_after_window() -> int:
            hdrs = _py_headers({"Nats-Msg-Id": "W"})
            await py_producer.produce(bytearray(b"py"), headers=hdrs, msg_id="W")
            return len(await stream_messages(js, stream_of(station))) - 1

        return await poll(stored_after_window, timeout=20.0, what="the window to expire")

    assert run_memphis_py(broker, body) == 1


# ------------------------------------------------------------------------------ edges


def test_large_payload_and_utf8_header_values_both_ways(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    big = bytes(range(256)) * 3500  # ~900 KB: spans many socket reads, under the 1 MB limit
    consumer = sdk_consumer(sdk, station)

    async def py_produce(m: Any, js: JetStreamContext) -> None:
        producer = await m.producer(station_name=station, producer_name="py-p")
        headers = _py_headers({"note": "värde ☃ — ok"})
        await producer.produce(bytearray(big), headers=headers)

    run_memphis_py(broker, py_produce)
    (got,) = consumer.fetch(batch_size=1)
    assert got.data == big
    assert got.headers == {"note": "värde ☃ — ok"}
    got.ack()

    sdk.create_producer(station, "sdk-p").produce(big[::-1], headers={"note": "ünï ☃"})

    async def py_fetch(m: Any, js: JetStreamContext) -> None:
        theirs = await m.consumer(
            station_name=station, consumer_name="py-c", start_consume_from_sequence=2
        )
        (msg,) = await theirs.fetch(batch_size=1)
        assert bytes(msg.get_data()) == big[::-1]
        assert msg.get_headers()["note"] == "ünï ☃"
        await msg.ack()

    run_memphis_py(broker, py_fetch)


def test_memphis_py_consumer_start_positions_on_sdk_messages(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = sdk.create_station(station).create_producer("sdk-p")
    for i in range(1, 7):
        producer.produce(b"m%d" % i)

    async def body(m: Any, js: JetStreamContext) -> None:
        from_seq = await m.consumer(
            station_name=station, consumer_name="py-from-4", start_consume_from_sequence=4
        )
        got = await from_seq.fetch(batch_size=10)
        assert [bytes(x.get_data()) for x in got] == [b"m4", b"m5", b"m6"]
        assert [x.get_sequence_number() for x in got] == [4, 5, 6]
        last = await m.consumer(station_name=station, consumer_name="py-last-2", last_messages=2)
        got = await last.fetch(batch_size=10)
        assert [bytes(x.get_data()) for x in got] == [b"m5", b"m6"]

    run_memphis_py(broker, body)


def test_sdk_round_robin_on_a_station_memphis_py_created(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")

    async def create(m: Any, js: JetStreamContext) -> None:
        await m.station(name=station, partitions_number=3, idempotency_window_ms=30_000)

    run_memphis_py(broker, create)
    same = sdk.create_station(station, partitions_number=3)  # existing: returned unchanged
    producer = same.create_producer("sdk-p")
    for i in range(6):
        producer.produce(b"r%d" % i)
    consumer = sdk.create_consumer(station, "sdk-c", batch_max_wait_time=1.0)
    seen: list[tuple[int | None, bytes]] = []
    for p in (1, 2, 3):
        seen += [(m.partition, m.data) for m in consumer.fetch(batch_size=2, partition_number=p)]
    assert sorted(d for _, d in seen) == [b"r%d" % i for i in range(6)]
    assert [p for p, _ in seen] == [1, 1, 2, 2, 3, 3]

    async def window(m: Any, js: JetStreamContext) -> float:
        return float((await js.stream_info(stream_of(station, 2))).config.duplicate_window)

    assert run_memphis_py(broker, window) == 30.0
