"""Prometheus series and the overview's throughput history (docs/broker.md, "Metrics").

Counters that JetStream already keeps (a stream's ``last_seq``, a durable's delivered count)
are exported as they are read at scrape time, through a custom collector: there is no second
count to drift from JetStream's. Only the control-plane request histogram is counted here, from
the control plane's ``request_observers`` hook.

Labels are bounded: ``station`` and ``group`` (as many as the operator created), ``subject``
(the nine ``$memphis_*`` request subjects), ``outcome`` (``ok``/``error``) and ``server`` (one
per node). No message, connection or producer ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from memphis_broker._context import Context
from memphis_broker.console._state import ServerHealth, StationState, read_health, read_stations

__all__ = ["Metrics", "RateHistory", "RatePoint", "station_totals"]

log = logging.getLogger("memphis_broker.console")

#: Seconds between two throughput samples, and how many are kept (10 minutes).
SAMPLE_INTERVAL_S: Final = 5.0
HISTORY_POINTS: Final = 120
#: Seconds the sampler keeps going after the last logged-in page request (the graph's span).
ACTIVE_WINDOW_S: Final = SAMPLE_INTERVAL_S * HISTORY_POINTS
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class RatePoint:
    """Messages per second in (stored) and out (delivered) between two samples."""

    at: float  # Unix time, seconds
    msgs_in: float
    msgs_out: float


async def station_totals(ctx: Context) -> tuple[int, int]:
    """Messages in and out summed over every station (see ``_state``'s docstring)."""
    # Only what the totals need: no DLS rows, no producer rows.
    stations = await read_stations(ctx, dls=False, producers=False)
    return sum(s.messages_in for s in stations), sum(s.messages_out for s in stations)


class RateHistory:
    """The overview graph's data: one sample of the in/out totals every few seconds, taken only
    while the console is in use.

    Each sample costs one JetStream API request per partition and per group durable, so the
    sampler parks when no logged-in page has been requested for :data:`ACTIVE_WINDOW_S`
    (docs/console.md, "Cost") and wakes on the next :meth:`touch`.

    Args:
        totals: reads the current (messages in, messages out) totals.
        interval: seconds between two samples (default :data:`SAMPLE_INTERVAL_S`).
        clock: monotonic seconds, for the activity window (default :func:`time.monotonic`).
    """

    def __init__(
        self,
        totals: Callable[[], Awaitable[tuple[int, int]]],
        *,
        interval: float = SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._totals = totals
        self._interval = interval
        self._clock = clock
        self.points: deque[RatePoint] = deque(maxlen=HISTORY_POINTS)
        self._last: tuple[float, int, int] | None = None
        self._active_until = -1.0
        self._wake = asyncio.Event()
        #: True while the sampler is parked for want of a console user.
        self.parked = False
        # nats-py may turn a cancellation inside a request into its own TimeoutError, which
        # the loop treats as a failed read: the flag ends it anyway (as in ControlPlane.stop).
        self.stopping = False

    def touch(self) -> None:
        """A logged-in page was requested: sample for the next :data:`ACTIVE_WINDOW_S`."""
        self._active_until = self._clock() + ACTIVE_WINDOW_S
        self._wake.set()

    def stop(self) -> None:
        """Make :meth:`run` return at its next step (parked or not)."""
        self.stopping = True
        self._wake.set()

    def add(self, at: float, msgs_in: int, msgs_out: int) -> None:
        """Record the totals read at ``at`` (monotonic seconds are not needed: rates use the
        difference of two wall-clock reads a few seconds apart)."""
        if self._last is not None:
            t0, in0, out0 = self._last
            dt = at - t0
            if dt > 0:
                # A deleted station makes a total go down: clamp, a rate is never negative.
                self.points.append(
                    RatePoint(at, max(0, msgs_in - in0) / dt, max(0, msgs_out - out0) / dt)
                )
        self._last = (at, msgs_in, msgs_out)

    async def run(self) -> None:
        """Sample until :meth:`stop`; a failed read (a restarting server) skips one point."""
        while not self.stopping:
            if self._clock() >= self._active_until:
                self._last = None  # no rate averaged over the idle gap
                self._wake.clear()
                self.parked = True
                await self._wake.wait()
                self.parked = False
                continue
            try:
                msgs_in, msgs_out = await self._totals()
                self.add(time.time(), msgs_in, msgs_out)
            except Exception as err:
                log.debug("throughput sample failed: %s", err)
            await asyncio.sleep(self._interval)


class _Snapshot(Collector):
    """Yields the series of the last :meth:`Metrics.render` read."""

    def __init__(self) -> None:
        self.stations: list[StationState] = []
        self.health: list[ServerHealth] = []

    def collect(self) -> Iterator[Metric]:
        labels = ["station"]
        glabels = ["station", "group"]
        stations = GaugeMetricFamily("memphis_stations", "Number of stations")
        stations.add_metric([], len(self.stations))
        yield stations
        m_in = CounterMetricFamily(
            "memphis_station_messages_in",
            "Messages stored into the station (all partitions)",
            labels=labels,
        )
        m_out = CounterMetricFamily(
            "memphis_station_messages_out",
            "Messages delivered to the station's consumer groups (redeliveries included)",
            labels=labels,
        )
        stored = GaugeMetricFamily("memphis_station_messages", "Messages stored now", labels=labels)
        sbytes = GaugeMetricFamily(
            "memphis_station_bytes", "Bytes stored now (JetStream stream state)", labels=labels
        )
        dls = GaugeMetricFamily(
            "memphis_station_dls_messages", "Rows in the dead-letter station", labels=labels
        )
        lag = GaugeMetricFamily(
            "memphis_group_lag", "Messages not yet delivered to the group", labels=glabels
        )
        unacked = GaugeMetricFamily(
            "memphis_group_unacked",
            "Messages delivered to the group, not yet acknowledged",
            labels=glabels,
        )
        poison = GaugeMetricFamily(
            "memphis_group_poison", "Poison messages of the group in the DLS", labels=glabels
        )
        delivered = CounterMetricFamily(
            "memphis_group_delivered",
            "Deliveries to the group (redeliveries included)",
            labels=glabels,
        )
        redelivered = GaugeMetricFamily(
            "memphis_group_redelivered",
            "Messages delivered to the group more than once, unacknowledged",
            labels=glabels,
        )
        for st in self.stations:
            m_in.add_metric([st.name], st.messages_in)
            m_out.add_metric([st.name], st.messages_out)
            stored.add_metric([st.name], st.messages)
            sbytes.add_metric([st.name], st.bytes)
            dls.add_metric([st.name], st.dls)
            for g in st.groups.values():
                lag.add_metric([st.name, g.name], g.lag)
                unacked.add_metric([st.name, g.name], g.unacked)
                poison.add_metric([st.name, g.name], g.poison)
                delivered.add_metric([st.name, g.name], g.delivered)
                redelivered.add_metric([st.name, g.name], g.redelivered)
        yield from (m_in, m_out, stored, sbytes, dls, lag, unacked, poison, delivered, redelivered)
        slabels = ["server"]
        up = GaugeMetricFamily("memphis_server_healthy", "1 if /healthz says ok", labels=slabels)
        conns = GaugeMetricFamily("memphis_clients_connected", "Client connections", labels=slabels)
        counters = {
            name: CounterMetricFamily(f"memphis_server_{name}", text, labels=slabels)
            for name, text in (
                ("in_msgs", "Messages received by nats-server"),
                ("out_msgs", "Messages sent by nats-server"),
                ("in_bytes", "Bytes received by nats-server"),
                ("out_bytes", "Bytes sent by nats-server"),
            )
        }
        for h in self.health:
            server = str(h.varz.get("server_name") or h.url)
            up.add_metric([server], 1 if h.healthy else 0)
            if h.varz:
                conns.add_metric([server], h.connections)
                for name, fam in counters.items():
                    fam.add_metric([server], int(h.varz.get(name, 0)))
        yield from (up, conns, *counters.values())


class Metrics:
    """The console's registry: scrape-time JetStream series plus the request histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.requests = Histogram(
            "memphis_control_request_seconds",
            "Control-plane requests by subject and outcome, and how long they took",
            ["subject", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lock = asyncio.Lock()

    def observe(self, subject: str, ok: bool, seconds: float) -> None:
        """The control plane's ``request_observers`` callback."""
        self.requests.labels(subject, "ok" if ok else "error").observe(seconds)

    async def render(self, ctx: Context, monitor_urls: list[str]) -> bytes:
        """Read the state now and return the exposition text."""
        async with self._lock:  # two scrapes at once share nothing half-written
            stations, health = await asyncio.gather(
                read_stations(ctx, producers=False), read_health(monitor_urls)
            )
            self._snapshot.stations, self._snapshot.health = stations, health
            return generate_latest(self.registry)
