"""memphis_sync: the blocking Memphis client (one I/O thread per connection).

import memphis_sync as memphis

with memphis.connect("localhost", "root", connection_token="memphis") as conn:
    producer = conn.create_producer("orders", "web")
    producer.produce({"id": 1})
"""

from __future__ import annotations

from memphis_core import (
    TLS,
    ConnectionClosedError,
    Headers,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisSchemaError,
    PubAck,
    RemoteProtocolError,
    RequestTimeoutError,
    RetentionType,
    SchemaType,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
    StorageType,
    __version__,
)

from ._connection import Connection, Station, connect
from ._consumer import Consumer, Message
from ._producer import Producer

__all__ = [
    "TLS",
    "Connection",
    "ConnectionClosedError",
    "Consumer",
    "Headers",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "Message",
    "Producer",
    "PubAck",
    "RemoteProtocolError",
    "RequestTimeoutError",
    "RetentionType",
    "SchemaType",
    "Station",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
    "StorageType",
    "__version__",
    "connect",
]
