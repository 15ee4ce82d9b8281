"""The public classes of memphis_trio and memphis_asyncio, listed once: both frontends re-export
this module whole, next to their own ``connect`` (``tests/frontends/test_api_parity.py`` checks
that memphis_sync exports the same names)."""

from __future__ import annotations

from ._connect import Connecting
from ._connection import Connection, Station
from ._consumer import Consumer, Message
from ._producer import ProduceHandle, Producer

__all__ = [
    "Connecting",
    "Connection",
    "Consumer",
    "Message",
    "ProduceHandle",
    "Producer",
    "Station",
]
