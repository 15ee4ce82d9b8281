"""memphis_sync: the blocking Memphis client (one I/O thread per connection).

import memphis_sync as memphis

with memphis.connect("localhost", "root", connection_token="memphis") as conn:
    producer = conn.create_producer("orders", "web")
    producer.produce({"id": 1})
"""

from __future__ import annotations

from _memphis_io import _public
from _memphis_io._public import *  # noqa: F403 - the shared value types, listed in _public
from memphis_core.memphis import _errors
from memphis_core.memphis._errors import *  # noqa: F403 - every public error

from ._connect import connect
from ._connection import Connection, Station
from ._consumer import Consumer, Message
from ._producer import ProduceHandle, Producer

#: What :func:`connect` returns. In the async frontends it is an object to ``await`` or to use
#: in ``async with``; in this blocking one, the :class:`Connection` itself (use it in ``with``,
#: or call ``close()``). The name exists so that code annotated for one frontend reads the same
#: in all three.
Connecting = Connection

__all__ = [
    "Connecting",
    "Connection",
    "Consumer",
    "Message",
    "ProduceHandle",
    "Producer",
    "Station",
    "connect",
]
__all__ += _public.__all__
__all__ += _errors.__all__
