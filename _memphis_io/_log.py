"""One logging vocabulary for the three frontends: the ``memphis`` logger hierarchy.

* ``memphis.connection``: connected (with the server), disconnected (with the cause), each
  reconnect attempt, reconnected, closed, server ``-ERR`` texts, control requests retried;
* ``memphis.consumer``: consume-handler and error-handler failures (with tracebacks).

Both drivers pass every connection event through :func:`log_event`, so a user who turns on
``logging.DEBUG`` sees the same records whichever frontend runs.
"""

from __future__ import annotations

import logging
from typing import Final

from memphis_core import (
    Closed,
    Connected,
    ConsumerError,
    ControlRetry,
    Disconnected,
    ReconnectDue,
    ServerError,
)
from memphis_core.nats._events import TransportEvent
from memphis_core.nats._pool import server_name

__all__ = ["connection_log", "log_crash", "log_event"]

# A library's loggers stay silent until the application configures logging: without this,
# Python's last-resort handler would print our warnings on stderr.
logging.getLogger("memphis").addHandler(logging.NullHandler())
connection_log: Final = logging.getLogger("memphis.connection")


def log_crash(exc: BaseException) -> None:
    """Log a bug met by an engine, with its traceback (the connection closes with it)."""
    connection_log.error("memphis: internal error", exc_info=exc)


def log_event(event: TransportEvent | ConsumerError | ControlRetry, server: str) -> None:
    """Log one connection event; ``server`` is the ``host:port`` being used.

    Connected, Disconnected, ReconnectDue and Closed carry the server they concern, which is
    named instead: by the time they are read after a failover, the pool has moved on.
    """
    log = connection_log
    if isinstance(event, Connected | Disconnected | ReconnectDue | Closed):
        server = server_name(event.server) or server
    if isinstance(event, Connected):
        if event.reconnected:
            log.info("reconnected to %s", server)
        else:
            log.info("connected to %s", server)
    elif isinstance(event, Disconnected):
        # The error usually names the server already (for the callback's sake): not twice.
        detail = str(event.error).removeprefix(f"{server}: ")
        if event.reconnect_at is None:
            log.warning("disconnected from %s: %s", server, detail)
        else:
            log.warning("disconnected from %s: %s; reconnecting", server, detail)
    elif isinstance(event, ReconnectDue):
        log.info("reconnect attempt %d to %s", event.attempt, server)
    elif isinstance(event, Closed):
        if event.error is None:
            log.debug("connection to %s closed", server)
        else:
            log.error("connection to %s closed: %s", server, event.error)
    elif isinstance(event, ServerError):
        log.warning("server %s: -ERR %s", server, event.message)
    elif isinstance(event, ControlRetry):
        log.warning(
            "%s: no reply on %s in time, attempt %d", event.what, event.subject, event.attempt
        )
