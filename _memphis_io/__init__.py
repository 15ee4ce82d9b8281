"""What the three frontends share that is I/O and so cannot live in ``memphis_core``.

Private: import it only from ``memphis_sync``, ``_memphis_async`` and their tests.
"""

from __future__ import annotations

from ._callbacks import ConnectionCallbacks, ErrorCallback, EventCallback
from ._log import connection_log, log_crash
from ._tls import tls_context

__all__ = [
    "ConnectionCallbacks",
    "ErrorCallback",
    "EventCallback",
    "connection_log",
    "log_crash",
    "tls_context",
]
