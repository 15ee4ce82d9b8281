"""memphis_asyncio: the asyncio Memphis client.

import memphis_asyncio as memphis

async with memphis.connect("localhost", "root", connection_token="memphis") as conn:
    producer = await conn.create_producer("orders", "web")
    await producer.produce({"id": 1})

``conn = await memphis.connect(...)`` works too (then ``await conn.close()``). The reader, the
pump and consume loops run as tasks on the running loop; ``asyncio.timeout`` and ``wait_for``
around any call are honoured and leave the connection usable (a cancelled ``fetch`` gives its
batch back). Everything but the backend is shared with ``memphis_trio``.
"""

from __future__ import annotations

from _memphis_async import (
    Connecting,
    Connection,
    Consumer,
    Message,
    Producer,
    Station,
    make_connect,
)
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

from ._backend import AsyncioBackend

connect = make_connect(AsyncioBackend())

__all__ = [
    "TLS",
    "Connecting",
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
