"""The control plane: a nats-py service answering the ``$memphis_*`` subjects.

Theory of operation (docs/protocol.md §2):

* Each of the nine request subjects is a **queue subscription** in the broker's queue group, so
  any number of instances share the load and every request is handled by exactly one of them.
  Like the real broker (one goroutine per request) each request runs in its own task.
* Fire-and-forget DLS reports and JetStream's max-deliveries advisories are captured by
  work-queue streams (see ``_dls``); every instance pulls from the same durable, so each event
  is processed once, and events published while no instance runs are processed later.
* All state is in KV buckets (``_store``); an instance holds no state of its own, so it can be
  restarted, or run twice, at any time.
* Connection tracking (docs/protocol.md §10.1/§10.2): stock NATS has no hook at CONNECT, so we poll
the monitoring
  endpoint ``/connz`` and compare the ``<connectionId>::<username>`` names with the rows
  (docs/protocol.md §10.1 allows this). A row created after a poll started is never deactivated by
  that poll.
  In a cluster every node's endpoint is polled; a round in which one of them cannot be read
  deactivates and collects nothing, since its clients are unknown.
* Cluster safety (docs/broker.md, "Cluster safety"): one instance per node is the intended
  deployment. Each request runs under a deadline (``request_budget``) inside which transient
  JetStream errors are retried, and every request is logged at DEBUG on the
  ``memphis_broker.control`` logger with its outcome and duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from memphis_broker import _dls
from memphis_broker._clients import (
    handle_consumer_create,
    handle_consumer_destroy,
    handle_producer_create,
    handle_producer_destroy,
)
from memphis_broker._context import Context, now_ms
from memphis_broker._durability import BROKER_INFO, broker_info
from memphis_broker._gojson import encode
from memphis_broker._jsapi import (
    ERR_REPLICAS_NOT_SUPPORTED,
    ERR_STREAM_NOT_FOUND,
    JSApi,
    JSApiError,
    deadline,
)
from memphis_broker._schemas import (
    handle_schema_attach,
    handle_schema_create,
    handle_schema_detach,
)
from memphis_broker._stations import (
    handle_station_create,
    handle_station_destroy,
    repair_interrupted_creates,
)
from memphis_broker._store import ERR_PLACEMENT, Store, replica_choices
from memphis_core.memphis import _control as rq

__all__ = ["CONTROL_PLANE_NAME", "REQUEST_SUBJECTS", "ControlPlane"]

log = logging.getLogger("memphis_broker")
#: One DEBUG line per control request: subject, names, outcome, milliseconds.
request_log = logging.getLogger("memphis_broker.control")

Handler = Callable[[Context, bytes], Awaitable[bytes]]
CONTROL_PLANE_NAME: Final = "MEMPHIS control plane"
_SWEEP_MS: Final = 15 * 60 * 1000
#: Seconds a request may spend retrying JetStream through a leader election. The SDKs wait
#: 20 s for a control reply (docs/protocol.md), so the reply, even an error, comes
#: before they give up and retry.
DEFAULT_REQUEST_BUDGET: Final = 15.0
# JetStream: "stream name already in use with a different configuration".
_ERR_STREAM_NAME_IN_USE: Final = 10058

# (subject, handler, reply style) per docs/protocol.md §2.4; the queue group is derived as the real
# broker does.
REQUEST_SUBJECTS: Final[tuple[tuple[str, Handler, str], ...]] = (
    (rq.STATION_CREATIONS, handle_station_create, "text"),
    (rq.STATION_DESTRUCTIONS, handle_station_destroy, "text"),
    (rq.PRODUCER_CREATIONS, handle_producer_create, "json"),
    (rq.PRODUCER_DESTRUCTIONS, handle_producer_destroy, "text"),
    (rq.CONSUMER_CREATIONS, handle_consumer_create, "text"),
    (rq.CONSUMER_DESTRUCTIONS, handle_consumer_destroy, "text"),
    (rq.SCHEMA_ATTACHMENTS, handle_schema_attach, "text"),
    (rq.SCHEMA_DETACHMENTS, handle_schema_detach, "text"),
    (rq.SCHEMA_CREATIONS, handle_schema_create, "json"),
)


def _queue_group(subject: str) -> str:
    return f"memphis_{subject.removeprefix('$memphis_')}_listeners_group"


class ControlPlane:
    """One control-plane instance attached to a NATS server.

    Args:
        servers: NATS URL(s).
        token / user / password: credentials of the control plane's own connection.
        users: the Memphis users in password mode (lower-case bare names, root included); None
            means token mode, where any username is accepted.
        monitor_url: ``http://host:port`` of the server's monitoring endpoint, for connection
            tracking; None disables it. For a cluster give every node's endpoint (a sequence,
            or one string with comma-separated URLs): clients may be on any node.
        dls_retention_hours: age after which DLS rows expire (docs/protocol.md §9.4, default 3).
        gc_hours: age after which inactive producer/consumer rows are deleted (docs/protocol.md
        §10.2, default 2).
        poll_interval: seconds between two connection-tracking polls (default 0.5).
        request_budget: seconds one control request may spend retrying transient JetStream
            errors (a leader election) before it replies with the error (default 15).
        name: this instance's name in log lines (default: a random 8-character id).
    """

    def __init__(
        self,
        servers: str | list[str],
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        users: Iterable[str] | None = None,
        monitor_url: str | Sequence[str] | None = None,
        dls_retention_hours: float = 3.0,
        gc_hours: float = 2.0,
        poll_interval: float = 0.5,
        request_budget: float = DEFAULT_REQUEST_BUDGET,
        name: str | None = None,
    ) -> None:
        if request_budget <= 0:
            raise ValueError(f"request_budget must be > 0 seconds, got {request_budget!r}")
        self._servers = servers
        self._auth: dict[str, Any] = {}
        if token is not None:
            self._auth["token"] = token
        if user is not None:
            self._auth.update(user=user, password=password)
        self._users = frozenset(u.lower() for u in users) if users is not None else None
        urls = monitor_url.split(",") if isinstance(monitor_url, str) else monitor_url or []
        self._monitor_urls = [u.strip() for u in urls if u.strip()]
        self._budget = request_budget
        self.name = name or uuid.uuid4().hex[:8]
        self._retention_s = dls_retention_hours * 3600
        self._poll_interval = poll_interval
        self._gc_hours = gc_hours
        self._nc: Client | None = None
        self._ctx: Context | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._known_conns: set[str] | None = None
        self._stopping = False
        #: Called after every control request with (subject, ok, seconds); the console's
        #: metrics (docs/console.md) count requests through it. Must not raise or block.
        self.request_observers: list[Callable[[str, bool, float], None]] = []

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            raise RuntimeError("control plane not started")
        return self._ctx

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, create the buckets and capture streams, and start serving."""
        self._stopping = False
        nc = await nats.connect(
            servers=self._servers,
            name=CONTROL_PLANE_NAME,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=5,
            error_cb=self._on_error,
            **self._auth,
        )
        self._nc = nc
        js = nc.jetstream(timeout=10.0)
        api = JSApi(nc)
        replicas = replica_choices(nc)
        store = await Store.open(js, self._retention_s, replicas)
        self._ctx = Context(nc=nc, js=js, api=api, store=store, users=self._users)
        for stream, subject, durable in _dls.INTERNAL_STREAMS:
            await _ensure_capture_stream(api, stream, subject, durable, replicas)
        for subject, handler, style in REQUEST_SUBJECTS:
            await nc.subscribe(subject, queue=_queue_group(subject), cb=self._serve(handler, style))
        await nc.subscribe(
            rq.PM_ACKS, queue=f"{rq.PM_ACKS}_group", cb=self._fire(_dls.process_pm_ack)
        )
        await nc.subscribe(
            rq.NOTIFICATIONS,
            queue=f"{rq.NOTIFICATIONS}_group",
            cb=self._fire(_drop_notification),
        )
        await nc.subscribe(
            BROKER_INFO, queue=_queue_group(BROKER_INFO), cb=self._answer_broker_info
        )
        await nc.flush()
        processors = (_dls.process_advisory, _dls.process_schemaverse, _dls.process_nacked)
        for (stream, _subject, durable), fn in zip(_dls.INTERNAL_STREAMS, processors, strict=True):
            self._loops.append(asyncio.create_task(self._pull_loop(stream, durable, fn)))
        if self._monitor_urls:
            self._loops.append(asyncio.create_task(self._track_connections()))
        self._loops.append(asyncio.create_task(self._repair_interrupted_creates()))

    async def stop(self) -> None:
        """Stop serving; in-flight requests finish first (up to 5 s)."""
        # nats-py may turn a cancellation inside a request into its own TimeoutError, which the
        # loops treat as transient; the flag makes them stop anyway.
        self._stopping = True
        for task in self._loops:
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=5.0)
        self._loops.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if self._nc is not None:
            # Not drain(): draining a pull subscription can block for its whole timeout; the
            # in-flight requests were awaited above, so flushing their replies is enough.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.flush(), 2.0)
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = None

    async def _answer_broker_info(self, msg: Msg) -> None:
        """``$memphis_broker_info``: the fsync mode in force (docs/broker.md, "Durability")."""

        async def run() -> None:
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(encode(await broker_info(self._monitor_urls)))

        self._spawn(run())

    async def _on_error(self, err: Exception) -> None:
        log.debug("nats connection: %s", err)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _serve(self, handler: Handler, style: str) -> Callable[[Msg], Awaitable[None]]:
        async def run(msg: Msg) -> None:
            started = time.perf_counter()
            try:
                with deadline(self._budget):
                    reply = await handler(self.ctx, msg.data)
                outcome = _outcome(reply)
            except Exception as err:
                # Never a silent drop: an internal failure is answered in the subject's style.
                request_log.exception("[%s] handling %s", self.name, msg.subject)
                text = str(err) or type(err).__name__
                reply = encode({"error": text}) if style == "json" else text.encode()
                outcome = text
            elapsed = time.perf_counter() - started
            for observe in self.request_observers:
                observe(msg.subject, outcome == "ok", elapsed)
            if request_log.isEnabledFor(logging.DEBUG):
                request_log.debug(
                    "[%s] %s %s -> %s (%.1f ms)",
                    self.name,
                    msg.subject,
                    _names(msg.subject, msg.data),
                    outcome,
                    elapsed * 1000,
                )
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(reply)

        async def cb(msg: Msg) -> None:
            self._spawn(run(msg))

        return cb

    def _fire(self, fn: Handler | Callable[[Context, bytes], Awaitable[None]]) -> Any:
        async def run(msg: Msg) -> None:
            try:
                await fn(self.ctx, msg.data)
            except Exception:
                log.exception("handling %s", msg.subject)

        async def cb(msg: Msg) -> None:
            self._spawn(run(msg))

        return cb

    async def _pull_loop(
        self,
        stream: str,
        durable: str,
        fn: Callable[[Context, bytes, str | None], Awaitable[None]],
    ) -> None:
        """Process one capture stream; a message is acked only once processed (docs/protocol.md
        §9.1)."""
        assert self._ctx is not None
        js = self._ctx.js
        pause = 0.2
        while not self._stopping:
            try:
                psub = await js.pull_subscribe_bind(durable=durable, stream=stream)
                while not self._stopping:
                    try:
                        msgs = await psub.fetch(1, timeout=2.0)
                    except (nats.errors.TimeoutError, TimeoutError):
                        pause = 0.2
                        continue
                    pause = 0.2
                    for m in msgs:
                        try:
                            await fn(self._ctx, m.data, _report_id(m))
                        except Exception:
                            log.exception("processing %s", stream)
                            await m.nak(delay=1.0)
                            continue
                        await m.ack()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                # Typically the server is restarting or the stream electing a leader;
                # nats-py reconnects underneath us. Back off so that a long outage is not
                # a busy loop.
                log.debug("pull loop %s: %s", stream, err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _repair_interrupted_creates(self) -> None:
        """Adopt the streams of a station create that a stop interrupted (see
        :func:`repair_interrupted_creates`); a create in flight elsewhere gets this
        instance's request budget to write its own record first."""
        try:
            await repair_interrupted_creates(self.ctx, grace_s=self._budget)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Not fatal: the next start tries again; a create of the station adopts them too.
            log.warning("[%s] repairing interrupted station creates: %s", self.name, err)

    async def _rows_version(self) -> tuple[int, ...]:
        """Last sequence of the producer/consumer buckets: changes whenever any row does."""
        out: list[int] = []
        for bucket in ("producers", "consumers"):
            info = await self.ctx.api.stream_info(f"KV_memphis_{bucket}")
            out.append(int(info["state"]["last_seq"]) if info else 0)
        return tuple(out)

    async def _track_connections(self) -> None:
        known_version: tuple[int, ...] | None = None
        last_sweep = 0
        while not self._stopping:
            started = now_ms()
            try:
                version = await self._rows_version()
                present, complete = await asyncio.to_thread(_connz_all, self._monitor_urls)
            except Exception as err:
                log.debug("connz: %s", err)  # e.g. the server is restarting: try again later
                present, complete = None, False
            # Rescan when the connections changed, or when rows did (a client may have come
            # and gone between two polls, leaving the connection set unchanged).
            # The GC sweep of docs/protocol.md §10.2 runs at least every 15 minutes.
            sweep_due = started - last_sweep > _SWEEP_MS
            changed = present != self._known_conns or version != known_version
            if present is not None and (changed or sweep_due):
                try:
                    await self._sync_rows(present, started, complete=complete)
                    if complete:
                        self._known_conns = present
                        known_version = version
                        last_sweep = started
                except Exception as err:
                    log.debug("connection sync: %s", err)
            await asyncio.sleep(self._poll_interval)

    async def _sync_rows(self, present: set[str], started_ms: int, *, complete: bool) -> None:
        """Mark rows (in)active and collect old inactive ones (docs/protocol.md §10.2).

        Without ``complete`` (a node's ``/connz`` could not be read) only activation happens:
        a client on the unreadable node is not known to be gone.
        """
        ctx = self.ctx
        for new in present - (self._known_conns or set()):
            # docs/protocol.md §10.1: published once per Memphis-SDK CONNECT; no current SDK
            # listens.
            await ctx.publish_json(
                f"$memphis_configurations_updates.init.{new}", {"notifications": False}
            )
        cutoff = started_ms - int(self._gc_hours * 3_600_000)
        for bucket in (ctx.store.producers, ctx.store.consumers):
            entries = await bucket.scan_entries()
            revs = {k: rev for k, _row, rev in entries}
            rows = [(k, row) for k, row, _rev in entries]
            touched: set[str] = set()
            for k, row in rows:
                alive = row["connection_id"] in present
                if row["is_active"] and not alive and row["updated_at"] < started_ms:
                    if complete:
                        await bucket.mutate(k, _set_active(False, started_ms))
                        touched.add(k)
                elif not row["is_active"] and alive:
                    await bucket.mutate(k, _set_active(True, started_ms))
                    touched.add(k)
            if not complete:
                continue
            garbage = _garbage(rows, cutoff, keep_one_per_group=bucket is ctx.store.consumers)
            for k in garbage:
                # Compare-and-set: a row re-registered (or re-activated by another instance)
                # since the scan has a new revision and stays.
                if k not in touched:
                    await bucket.delete(k, revs[k])


def _garbage(
    rows: list[tuple[str, dict[str, Any]]], cutoff_ms: int, *, keep_one_per_group: bool
) -> list[str]:
    """docs/protocol.md §10.2 GC: inactive rows older than the retention go; for consumers one row
    per group
    stays, so the group (its DLS tracking, docs/protocol.md §9.1 step 6) outlives its members."""

    def old(r: dict[str, Any]) -> bool:
        return not r["is_active"] and r["updated_at"] < cutoff_ms

    if not keep_one_per_group:
        return [k for k, r in rows if old(r)]
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for k, r in rows:
        groups.setdefault((r["station"], r["consumers_group"]), []).append((k, r))
    out: list[str] = []
    for members in groups.values():
        doomed = sorted((kr for kr in members if old(kr[1])), key=lambda kr: kr[1]["updated_at"])
        if len(doomed) == len(members):
            doomed = doomed[:-1]  # keep the newest row of an otherwise empty group
        out += [k for k, _r in doomed]
    return out


def _set_active(active: bool, started_ms: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(doc: dict[str, Any]) -> dict[str, Any]:
        # Re-check under CAS: a row re-registered since the poll began stays untouched.
        if not active and doc["updated_at"] >= started_ms:
            return doc
        doc["is_active"] = active
        doc["updated_at"] = now_ms()
        return doc

    return fn


def _connz_all(monitor_urls: list[str]) -> tuple[set[str], bool]:
    """The union of every node's connection ids, and whether every node answered."""
    present: set[str] = set()
    complete = True
    for url in monitor_urls:
        try:
            present |= _connz_ids(url)
        except Exception as err:
            log.debug("connz %s: %s", url, err)
            complete = False
    if not complete and not present:
        raise ConnectionError("no monitoring endpoint answered")
    return present, complete


def _connz_ids(monitor_url: str) -> set[str]:
    """Connection ids (the part before ``::`` of the CONNECT name) of all open connections."""
    url = f"{monitor_url.rstrip('/')}/connz?limit=1000000"
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.loads(resp.read())
    ids: set[str] = set()
    for conn in doc.get("connections") or []:
        name = conn.get("name") or ""
        if "::" in name:
            ids.add(name.split("::", 1)[0])
    return ids


async def _ensure_capture_stream(
    api: JSApi, stream: str, subject: str, durable: str, replicas: tuple[int, ...]
) -> None:
    """Create a DLS capture stream and its durable unless they exist (any replica count).

    Instances starting together race here: an identical create is accepted by JetStream, and
    a create with another replica count ("name already in use") means it exists.
    """
    tries = list(replicas)
    while await api.stream_info(stream) is None:
        count = tries.pop(0)
        try:
            await api.create_stream(_dls.stream_config(stream, subject, count))
        except JSApiError as err:
            if err.err_code in ERR_PLACEMENT and tries:
                continue  # a cluster smaller than 3 (see replica_choices)
            if err.err_code == ERR_REPLICAS_NOT_SUPPORTED and count > 1:
                tries = [1]
                continue
            if err.err_code != _ERR_STREAM_NAME_IN_USE:
                raise
        break
    if await api.consumer_info(stream, durable) is None:
        try:
            await api.create_consumer(stream, _dls.durable_config(durable))
        except JSApiError as err:
            if (
                err.err_code == ERR_STREAM_NOT_FOUND
                or await api.consumer_info(stream, durable) is None
            ):
                raise


def _report_id(msg: Msg) -> str | None:
    """Which capture-stream message this is: its sequence, and its timestamp so that a
    re-created stream (sequences from 1 again) cannot alias an old report."""
    try:
        meta = msg.metadata
    except Exception:
        return None
    seq = meta.sequence.stream if meta.sequence else None
    return f"{seq}-{meta.timestamp.timestamp():.6f}".replace(".", "_") if seq else None


def _outcome(reply: bytes) -> str:
    """``ok``, or the error text of a reply in either style (text, or JSON ``error``)."""
    if not reply:
        return "ok"
    if reply.startswith(b"{"):
        with contextlib.suppress(ValueError):
            doc = json.loads(reply)
            if isinstance(doc, dict):
                return str(doc.get("error") or "ok")
    return reply.decode("utf-8", "replace")


def _names(subject: str, payload: bytes) -> str:
    """``station=<s> name=<n>`` from a request body, as far as it can be read (for logs)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return "(unreadable body)"
    if not isinstance(doc, dict):
        return "(unreadable body)"
    station = doc.get("station_name")
    name = doc.get("name")
    if subject in (rq.STATION_CREATIONS,) and station is None:
        station, name = name, None
    parts = [f"station={station!r}"] if station is not None else []
    if name is not None:
        parts.append(f"name={name!r}")
    return " ".join(parts) or "-"


async def _drop_notification(ctx: Context, payload: bytes) -> None:
    # docs/protocol.md §9.2: there is no Slack integration, so `send_notification` stays false and
    # any
    # notification an SDK sends anyway is only logged.
    log.info("notification (no integration configured): %r", payload[:200])
