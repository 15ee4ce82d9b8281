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

from _memphis_async import _api
from _memphis_async._api import *  # noqa: F403 - the public classes, listed in _api
from _memphis_async._connect import make_connect as _make_connect
from _memphis_io import _public
from _memphis_io._public import *  # noqa: F403 - the shared value types, listed in _public
from memphis_core.memphis import _errors
from memphis_core.memphis._errors import *  # noqa: F403 - every public error

from . import _backend

connect = _make_connect(_backend.AsyncioBackend())

__all__ = ["connect"]
__all__ += _api.__all__
__all__ += _public.__all__
__all__ += _errors.__all__
