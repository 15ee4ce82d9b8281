"""Failed-login throttling for the console (docs/console.md, "Security").

Each login the console checks is a NATS connection attempt, and nats-server neither slows down
nor counts refused credentials. Without a limit, the console would let anyone who can reach it
try tokens or passwords as fast as the broker can refuse them. So after ``limit`` failed
logins from one client address within ``window`` seconds, further attempts from that address
are refused at once (HTTP 429, with ``Retry-After``) until the oldest failure leaves the
window; the broker is not asked. A successful login clears the address's record.

Memory is bounded: failures older than the window are dropped whenever an address is looked
at, and at most ``max_clients`` addresses are tracked (the least recently failed is forgotten
first). The clock is passed in, so the policy is tested without waiting.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

__all__ = ["LoginThrottle"]

#: Failed logins allowed per client address within :data:`WINDOW_S`.
LIMIT: Final = 5
#: Seconds a failed login counts against its address.
WINDOW_S: Final = 60.0
#: Addresses tracked at most (a flood from many addresses cannot grow memory without bound).
MAX_CLIENTS: Final = 10_000


class LoginThrottle:
    """Counts failed logins per client address.

    Args:
        clock: monotonic seconds (``time.monotonic`` in the console).
        limit: failed logins allowed per address within ``window``; default :data:`LIMIT` (5).
        window: seconds a failure counts; default :data:`WINDOW_S` (60.0).
        max_clients: addresses tracked at most; default :data:`MAX_CLIENTS` (10,000).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = LIMIT,
        window: float = WINDOW_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """Whole seconds until ``client`` may try again: 0 if it may try now."""
        failures = self._recent(client)
        if len(failures) < self._limit:
            return 0
        return max(1, math.ceil(failures[0] + self._window - self._clock()))

    def failed(self, client: str) -> None:
        """Count a refused login from ``client``."""
        failures = self._recent(client)
        failures.append(self._clock())
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """A login from ``client`` was accepted: its failures no longer count."""
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            # Only the last ``limit`` failures matter: the oldest of them says when to retry.
            return deque(maxlen=self._limit)
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures
