"""Bookkeeping for requests waiting on the shared reply inbox.

A dict by token plus their deadlines, in one FIFO lane per timeout (and a heap for the rest).
Finished requests leave stale entries that are skipped lazily; everything is rebuilt whenever
stale entries outnumber live ones, so memory follows the number of requests in flight (the
async-produce window), not the number ever sent.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Final

__all__ = [
    "DrainPing",
    "FlushPing",
    "InFlight",
    "KeepalivePing",
    "PendingRequest",
    "PongWaiter",
    "Subscription",
    "keepalive_ping",
]


class PendingRequest:
    """One request: its encoded PUB/HPUB (kept for replay after a reconnect) and its deadline."""

    __slots__ = ("data", "deadline", "multi", "replay", "sent", "sid", "token")

    def __init__(self, token: int, data: bytes, deadline: float, multi: bool, replay: bool) -> None:
        self.token = token
        self.data = data
        self.deadline = deadline
        self.multi = multi
        # False for pulls: a pull re-sent on a new connection would fetch a batch nobody waits for.
        self.replay = replay
        # Whether the request reached the current transport. A request made offline, or held back by
        # a delay, is unsent; ``_lost`` resets it for replayable requests so the next handshake
        # writes them.
        self.sent = False
        self.sid = 0  # a multi-reply request's own inbox subscription (0 = the shared inbox)


# Requests waiting for a reply, by token, with their deadlines. Only the session uses it; the token
# is also the last subject token of the reply inbox, which is how a reply finds its request.
class InFlight:
    """Requests by token, and their deadlines in lanes: one FIFO per timeout.

    Requests made with the same timeout expire in the order they were made (``now`` only goes
    forward), so their deadlines need no heap: adding is an append, and the earliest deadline
    is the smallest of a few lane heads. An async-produce stream, thousands of requests a
    second with one ``ack_wait``, then costs an append and a ``popleft`` per message instead
    of a heap push and pop. Deadlines that do not fit a lane (a clock
    that went back, more distinct timeouts than ``_MAX_LANES``, such as pulls, whose timeout
    is what is left of their wait) go to a heap, as before.

    Entries of answered requests stay where they are and are skipped when they reach a head.
    Everything is rebuilt from the live requests when stale entries outnumber them, so memory
    follows the number of requests in flight (the async-produce window), not the number sent.
    """

    __slots__ = ("_entries", "_heap", "_lanes", "_requests")

    def __init__(self) -> None:
        self._requests: dict[int, PendingRequest] = {}
        self._lanes: dict[float, deque[tuple[float, int]]] = {}
        self._heap: list[tuple[float, int]] = []
        self._entries = 0  # in lanes and heap together, live or stale

    def __len__(self) -> int:
        return len(self._requests)

    def __iter__(self) -> Iterator[PendingRequest]:
        """Live requests in creation (token) order, the order a replay must use."""
        # Sorted rather than relying on dict order: replay order is creation order, which is what
        # the broker must see so that produces of one producer keep their order across a reconnect.
        return iter(sorted(self._requests.values(), key=_by_token))

    def add(self, request: PendingRequest, timeout: float) -> None:
        """Track ``request``, whose deadline is ``timeout`` seconds after it was made."""
        requests = self._requests
        requests[request.token] = request
        if self._entries > 2 * len(requests) + 64:
            self._rebuild()
        self._entries += 1
        entry = (request.deadline, request.token)
        lane = self._lanes.get(timeout)
        if lane is None:
            if len(self._lanes) < _MAX_LANES:
                self._lanes[timeout] = deque((entry,))
                return
        elif not lane or lane[-1][0] <= entry[0]:  # a lane emptied by ``expire`` is reused
            lane.append(entry)
            return
        heapq.heappush(self._heap, entry)

    def _rebuild(self) -> None:
        # Keep only live entries; a lane keeps its order, so filtering it keeps it sorted.
        requests = self._requests
        lanes = self._lanes
        for key in list(lanes):
            live = deque(e for e in lanes[key] if _live(requests, e))
            if live:
                lanes[key] = live
            else:
                del lanes[key]
        heap = [e for e in self._heap if _live(requests, e)]
        heapq.heapify(heap)
        self._heap = heap
        self._entries = len(heap) + sum(len(lane) for lane in lanes.values())

    def get(self, token: int) -> PendingRequest | None:
        return self._requests.get(token)

    def pop(self, token: int) -> PendingRequest | None:
        return self._requests.pop(token, None)

    def clear(self) -> list[PendingRequest]:
        """Forget everything; return the requests that were live, in token order."""
        requests = sorted(self._requests.values(), key=_by_token)
        self._requests.clear()
        self._lanes.clear()
        self._heap.clear()
        self._entries = 0
        return requests

    def earliest(self) -> float | None:
        requests = self._requests
        best: float | None = None
        empty: list[float] = []
        for key, lane in self._lanes.items():
            while lane and not _live(requests, lane[0]):
                lane.popleft()
                self._entries -= 1
            if not lane:
                empty.append(key)
            elif best is None or lane[0][0] < best:
                best = lane[0][0]
        for key in empty:
            del self._lanes[key]
        heap = self._heap
        while heap and not _live(requests, heap[0]):
            heapq.heappop(heap)
            self._entries -= 1
        if heap and (best is None or heap[0][0] < best):
            best = heap[0][0]
        return best

    def expire(self, now: float) -> list[PendingRequest]:
        """Remove and return (in deadline order) the requests whose deadline is <= ``now``."""
        requests = self._requests
        due: list[tuple[float, int]] = []
        for lane in self._lanes.values():
            while lane and lane[0][0] <= now:
                due.append(lane.popleft())
                self._entries -= 1
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
            self._entries -= 1
        expired: list[PendingRequest] = []
        for deadline, token in sorted(due):
            request = requests.get(token)
            # A token's entry can be stale even when the token is live: comparing the deadline
            # guards against an entry that belongs to an earlier deadline of the same request.
            if request is not None and request.deadline == deadline:
                del requests[token]
                expired.append(request)
        return expired


# Lanes kept at once: a few timeouts (ack_wait, the control timeout, flushes) carry nearly all
# requests; the heap takes the rest, so ``earliest`` stays a short loop.
_MAX_LANES: Final = 8


def _live(requests: dict[int, PendingRequest], entry: tuple[float, int]) -> bool:
    request = requests.get(entry[1])
    return request is not None and request.deadline == entry[0]


def _by_token(request: PendingRequest) -> int:
    return request.token


class Subscription:
    """A live subscription, replayed (with what is left of its max) after every reconnect."""

    __slots__ = ("queue", "remaining", "sid", "subject")

    def __init__(self, sid: int, subject: str, queue: str | None) -> None:
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.remaining: int | None = None  # set by unsubscribe(sid, max_msgs)


# What a PING in flight waits for. The server answers PINGs in order, so the session keeps
# these in a queue and pops one per PONG; a tagged type says which kind of answer it was.


class KeepalivePing:
    """A client keepalive PING: its PONG only proves the connection is alive."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KeepalivePing()"


# One shared instance: a keepalive PING carries no data, and the PONG handler only needs its type to
# know that nothing has to be completed.
keepalive_ping: Final = KeepalivePing()


class FlushPing:
    """The PING of ``flush()`` number ``token``: its PONG completes the flush."""

    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"FlushPing({self.token})"


class DrainPing:
    """Sent after the UNSUB of an abandoned pull: its PONG proves nothing more can arrive."""

    __slots__ = ("sid",)

    def __init__(self, sid: int) -> None:
        self.sid = sid

    def __repr__(self) -> str:
        return f"DrainPing({self.sid})"


PongWaiter = KeepalivePing | FlushPing | DrainPing
