"""memphis_sync: the blocking Memphis client (one I/O thread per connection).

import memphis_sync as memphis

with memphis.connect("localhost", "root", connection_token="memphis") as conn:
    producer = conn.create_producer("orders", "web")
    producer.produce({"id": 1})
"""

from __future__ import annotations

from _memphis_io import _public
from _memphis_io._public import *  # noqa: F403 - the shared names, listed in _public

from ._connect import connect
from ._connection import Connection, Station
from ._consumer import Consumer, Message
from ._producer import ProduceHandle, Producer

__all__ = [
    "Connection",
    "Consumer",
    "Message",
    "ProduceHandle",
    "Producer",
    "Station",
    "connect",
]
__all__ += _public.__all__
