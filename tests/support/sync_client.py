"""The blocking client as the frontend tests open it: connected to a test broker, drained."""

from __future__ import annotations

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER

__all__ = ["connect", "drain"]


def connect(broker: EmbeddedBroker, **kwargs: object) -> memphis_sync.Connection:
    """``memphis_sync.connect`` to ``broker`` as the test user, ``kwargs`` being its options."""
    return memphis_sync.connect(
        broker.host,
        USER,
        connection_token=TOKEN,
        port=broker.port,
        **kwargs,  # type: ignore[arg-type]
    )


def drain(consumer: memphis_sync.Consumer) -> list[memphis_sync.Message]:
    """Fetch until an empty batch, acking everything."""
    received: list[memphis_sync.Message] = []
    while True:
        batch = consumer.fetch(500)
        if not batch:
            return received
        for message in batch:
            message.ack()
        received.extend(batch)
