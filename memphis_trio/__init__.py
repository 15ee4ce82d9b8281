"""memphis_trio: the trio Memphis client (structured concurrency).

import memphis_trio as memphis

async with memphis.connect("localhost", "root", connection_token="memphis") as conn:
    producer = await conn.create_producer("orders", "web")
    await producer.produce({"id": 1})

The ``async with`` block owns a nursery: the reader, the pump and consume loops live in it and
are stopped when the block ends. Cancel scopes (``trio.move_on_after``...) around any call are
honoured and leave the connection usable (a cancelled ``fetch`` gives its batch back).
``conn = await memphis.connect(...)`` also works, for code with no block to own the tasks (they
run as trio system tasks until ``await conn.close()``). Everything but the backend is shared
with ``memphis_asyncio``.
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

connect = _make_connect(_backend.TrioBackend())

__all__ = ["connect"]
__all__ += _api.__all__
__all__ += _public.__all__
__all__ += _errors.__all__
