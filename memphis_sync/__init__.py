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

from . import _api
from ._api import *  # noqa: F403 - the public classes, listed in _api
from ._connect import connect

__all__ = ["connect"]
__all__ += _api.__all__
__all__ += _public.__all__
__all__ += _errors.__all__
