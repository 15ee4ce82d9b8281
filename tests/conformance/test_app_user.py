"""The core scenarios as an application user of a password-mode broker (docs/broker.md,
"Permissions").

An application user's NATS permissions allow exactly what the Memphis protocol needs. This
module re-runs a core subset of the suite (stations, produce with ``msg_id``, fetch, ack, nack,
consumer groups, consume, dead letters, poison, schemas) with the ``broker``, ``probe`` and
``connect`` fixtures replaced: a module-scoped password-mode broker with one application user,
and connections made as that user. The probe reads the broker's state as root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.conformance._support import PASSWORD, BrokerProbe, connections

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
    test_defaults,
    test_destroy_removes_every_partition_stream,
    test_partitions_number_creates_one_stream_per_partition,
)

APP_USER = "app-user"
APP_PASSWORD = "app-secret"


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
