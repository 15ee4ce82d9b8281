"""The core scenarios as an application user of a password-mode broker (docs/broker.md,
"Permissions").

An application user's NATS permissions allow exactly what the Memphis protocol needs. This
module re-runs a core subset of the suite (stations, produce with ``msg_id``, fetch, ack, nack,
consumer groups, consume, dead letters, poison, schemas, an existing station) with the
``broker``, ``probe`` and ``connect`` fixtures replaced: a module-scoped password-mode broker
with one application user, and connections made as that user. The probe reads the broker's
state as root.

Introspection is checked here too: the user's permissions refuse the control plane's KV
buckets, so what lives only there (a station's schema and DLS settings, the schemas) is
reported as unknown, at once rather than after the query timeout (docs/introspection.md, "As an
application user").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from memphis_broker import EmbeddedBroker

# Imported test functions are collected here again and run with this module's fixtures.
from tests.conformance.test_consume import (  # noqa: F401
    test_consume_delivers_and_stop_consume_returns_promptly,
    test_handler_messages_can_be_nacked_and_come_back,
)
from tests.conformance.test_consumers import (  # noqa: F401
    test_ack_removes_the_message,
    test_consumer_group_members_share_the_messages,
    test_fetch_returns_messages_in_order_with_headers_and_sequence,
    test_nack_redelivers_at_once,
)
from tests.conformance.test_dls import (  # noqa: F401
    test_dead_letter_terminates_and_records_the_reason,
    test_max_msg_deliveries_sends_the_message_to_the_dls,
    test_resent_poison_message_comes_back_and_its_ack_clears_the_dls,
)
from tests.conformance.test_producers import (  # noqa: F401
    test_async_produce_and_flush,
    test_msg_id_deduplicates,
    test_sync_produce_is_stored_when_it_returns,
)
from tests.conformance.test_schemas import (  # noqa: F401
    test_detach_stops_validation,
    test_enforced_schema_validates_and_deserializes,
    test_schema_failure_is_reported_to_the_dls,
)
from tests.conformance.test_stations import (  # noqa: F401
    test_an_existing_station_with_other_options_is_logged,
    test_defaults,
    test_destroy_removes_every_partition_stream,
    test_partitions_number_creates_one_stream_per_partition,
)
from tests.support.names import PASSWORD
from tests.support.probe import BrokerProbe, connections

APP_USER = "app-user"
APP_PASSWORD = "app-secret"
# Seconds a refused read may take: it ends at the server's -ERR, so far below the 10 s a query
# request waits for an answer (QUERY_TIMEOUT) that never comes. Generous for a loaded machine.
PROMPT = 3.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    store = tmp_path_factory.mktemp("conformance-app-user-broker")
    with EmbeddedBroker(
        store_dir=store, users={APP_USER: APP_PASSWORD}, root_password=PASSWORD
    ) as b:
        yield b


@pytest.fixture(scope="module")
def probe(broker: EmbeddedBroker) -> Iterator[BrokerProbe]:
    p = BrokerProbe(broker)  # as root: full rights to read the broker's state
    yield p
    p.close()


@pytest.fixture
def connect(memphis: Any, broker: EmbeddedBroker) -> Iterator[Callable[..., Any]]:
    with connections(memphis, broker, APP_USER, password=APP_PASSWORD) as connect:
        yield connect


def timed(call: Callable[[], T]) -> T:
    """``call()``'s result; fail when it took :data:`PROMPT` seconds or more."""
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT, f"took {elapsed:.1f} s"
    return result


def test_introspection_reports_what_the_user_may_not_read_as_unknown(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    group = name("g")
    station = conn.create_station(name("st"), partitions_number=2)
    consumer = station.create_consumer(name("c"), consumer_group=group)
    station.create_producer(name("p")).produce(b"x", partition_number=1)

    info = timed(station.info)
    assert isinstance(info, memphis.StationInfo)
    assert [p.partition for p in info.partitions] == [1, 2]
    assert info.messages == 1
    assert info.consumer_groups == (group,)
    assert (info.schema, info.dls) == (None, None)  # the control plane's record is refused

    listed = {s.name: s for s in timed(conn.stations)}
    assert station.name in listed
    assert (listed[station.name].schema, listed[station.name].dls) == (None, None)

    assert timed(conn.schemas) is None  # the schema store is refused: unknown, not empty

    lag = timed(consumer.info)
    assert (lag.num_pending, lag.num_ack_pending) == (1, 0)
    assert lag.consumer_group == consumer.consumer_group


def test_create_station_on_an_existing_station_returns_promptly(
    conn: Any, name: Callable[[str], str]
) -> None:
    # create_station first reads the station's streams (best-effort, _existing.py): as this
    # user neither those reads nor the creation may wait for an answer that never comes.
    station = name("st")
    conn.create_station(station, partitions_number=2)
    again = timed(lambda: conn.create_station(station, partitions_number=2))
    assert again.name == station
