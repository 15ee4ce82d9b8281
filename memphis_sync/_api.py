# GENERATED from _memphis_async/_api.py by scripts/unasync.py: do not edit this copy.
"""The public classes of a frontend, listed once: each frontend re-exports this module whole,
next to its own ``connect`` (``tests/frontends/test_api_parity.py`` checks that the three
export the same names)."""

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
