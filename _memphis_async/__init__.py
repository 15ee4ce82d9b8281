"""The code memphis_trio and memphis_asyncio share: a driver and the public classes over a small
backend seam (``_backend.Backend``). Private: import the frontends, not this package.

Each frontend supplies a backend (~100-150 lines) and binds ``connect`` to it; everything else,
the pump and the API, is written once here, so the two cannot drift apart.
"""

from __future__ import annotations

from ._backend import Backend, Event, Spawner, Stream, Task
from ._connect import ConnectFunction, Connecting, make_connect
from ._connection import Connection, Station
from ._consumer import Consumer, ErrorHandler, Handler, Message
from ._driver import CLOSE_TIMEOUT, Driver
from ._producer import ProduceHandle, Producer

__all__ = [
    "CLOSE_TIMEOUT",
    "Backend",
    "ConnectFunction",
    "Connecting",
    "Connection",
    "Consumer",
    "Driver",
    "ErrorHandler",
    "Event",
    "Handler",
    "Message",
    "ProduceHandle",
    "Producer",
    "Spawner",
    "Station",
    "Stream",
    "Task",
    "make_connect",
]
