"""The control plane: a nats-py service answering the ``$memphis_*`` subjects.

Theory of operation (memphis-broker-protocol.md §1):

* Each of the nine request subjects is a **queue subscription** in the broker's queue group, so
  any number of instances share the load and every request is handled by exactly one of them.
  Like the real broker (one goroutine per request) each request runs in its own task.
* Fire-and-forget DLS reports and JetStream's max-deliveries advisories are captured by
  work-queue streams (see ``_dls``); every instance pulls from the same durable, so each event
  is processed once, and events published while no instance runs are processed later.
* All state is in KV buckets (``_store``); an instance holds no state of its own, so it can be
  restarted, or run twice, at any time.
* Connection tracking (§7.1/§7.3): stock NATS has no hook at CONNECT, so we poll the monitoring
  endpoint ``/connz`` and compare the ``<connectionId>::<username>`` names with the rows
  (§11.3 allows this). A row created after a poll started is never deactivated by that poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
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
from memphis_broker._gojson import encode
from memphis_broker._jsapi import JSApi
from memphis_broker._schemas import (
    handle_schema_attach,
    handle_schema_create,
    handle_schema_detach,
)
from memphis_broker._stations import handle_station_create, handle_station_destroy
from memphis_broker._store import Store
from memphis_core.memphis import _control as rq

__all__ = ["CONTROL_PLANE_NAME", "REQUEST_SUBJECTS", "ControlPlane"]

log = logging.getLogger("memphis_broker")

Handler = Callable[[Context, bytes], Awaitable[bytes]]
CONTROL_PLANE_NAME: Final = "MEMPHIS control plane"
_SWEEP_MS: Final = 15 * 60 * 1000

# (subject, handler, reply style) per §1.4; the queue group is derived as the real broker does.
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
            tracking; None disables it.
        dls_retention_hours: age after which DLS rows expire (§5.2, default 3).
        gc_hours: age after which inactive producer/consumer rows are deleted (§7.3, default 2).
    """

    def __init__(
        self,
        servers: str | list[str],
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        users: Iterable[str] | None = None,
        monitor_url: str | None = None,
        dls_retention_hours: float = 3.0,
        gc_hours: float = 2.0,
        poll_interval: float = 0.5,
    ) -> None:
        self._servers = servers
        self._auth: dict[str, Any] = {}
        if token is not None:
            self._auth["token"] = token
        if user is not None:
            self._auth.update(user=user, password=password)
        self._users = frozenset(u.lower() for u in users) if users is not None else None
        self._monitor_url = monitor_url
        self._retention_s = dls_retention_hours * 3600
        self._poll_interval = poll_interval
        self._gc_hours = gc_hours
        self._nc: Client | None = None
        self._ctx: Context | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._known_conns: set[str] | None = None
        self._stopping = False

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
        store = await Store.open(js, self._retention_s)
        self._ctx = Context(nc=nc, js=js, api=api, store=store, users=self._users)
        for stream, subject, durable in _dls.INTERNAL_STREAMS:
            if await api.stream_info(stream) is None:
                await api.create_stream(_dls.stream_config(stream, subject))
            if await api.consumer_info(stream, durable) is None:
                await api.create_consumer(stream, _dls.durable_config(durable))
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
        await nc.flush()
        processors = (_dls.process_advisory, _dls.process_schemaverse, _dls.process_nacked)
        for (stream, _subject, durable), fn in zip(_dls.INTERNAL_STREAMS, processors, strict=True):
            self._loops.append(asyncio.create_task(self._pull_loop(stream, durable, fn)))
        if self._monitor_url:
            self._loops.append(asyncio.create_task(self._track_connections()))

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

    async def _on_error(self, err: Exception) -> None:
        log.debug("nats connection: %s", err)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _serve(self, handler: Handler, style: str) -> Callable[[Msg], Awaitable[None]]:
        async def run(msg: Msg) -> None:
            try:
                reply = await handler(self.ctx, msg.data)
            except Exception as err:
                # Never a silent drop: an internal failure is answered in the subject's style.
                log.exception("handling %s", msg.subject)
                reply = (
                    encode({"error": str(err)})
                    if style == "json"
                    else (str(err) or type(err).__name__).encode()
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
        self, stream: str, durable: str, fn: Callable[[Context, bytes], Awaitable[None]]
    ) -> None:
        """Process one capture stream; a message is acked only once processed (§5.1)."""
        assert self._ctx is not None
        js = self._ctx.js
        while not self._stopping:
            try:
                psub = await js.pull_subscribe_bind(durable=durable, stream=stream)
                while not self._stopping:
                    try:
                        msgs = await psub.fetch(1, timeout=2.0)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    for m in msgs:
                        try:
                            await fn(self._ctx, m.data)
                        except Exception:
                            log.exception("processing %s", stream)
                            await m.nak(delay=1.0)
                            continue
                        await m.ack()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                # Typically the server is restarting; nats-py reconnects underneath us.
                log.debug("pull loop %s: %s", stream, err)
                await asyncio.sleep(0.2)

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
                present = await asyncio.to_thread(_connz_ids, self._monitor_url or "")
            except Exception as err:
                log.debug("connz: %s", err)  # e.g. the server is restarting: try again later
                present = None
            # Rescan when the connections changed, or when rows did (a client may have come
            # and gone between two polls, leaving the connection set unchanged).
            # The GC sweep of §7.3 runs at least every 15 minutes.
            sweep_due = started - last_sweep > _SWEEP_MS
            changed = present != self._known_conns or version != known_version
            if present is not None and (changed or sweep_due):
                try:
                    await self._sync_rows(present, started)
                    self._known_conns = present
                    known_version = version
                    last_sweep = started
                except Exception as err:
                    log.debug("connection sync: %s", err)
            await asyncio.sleep(self._poll_interval)

    async def _sync_rows(self, present: set[str], started_ms: int) -> None:
        ctx = self.ctx
        for new in present - (self._known_conns or set()):
            # §7.1: published once per Memphis-SDK CONNECT; no current SDK listens.
            await ctx.publish_json(
                f"$memphis_configurations_updates.init.{new}", {"notifications": False}
            )
        cutoff = started_ms - int(self._gc_hours * 3_600_000)
        for bucket in (ctx.store.producers, ctx.store.consumers):
            rows = await bucket.scan()
            for k, row in rows:
                alive = row["connection_id"] in present
                if row["is_active"] and not alive and row["updated_at"] < started_ms:
                    await bucket.mutate(k, _set_active(False, started_ms))
                elif not row["is_active"] and alive:
                    await bucket.mutate(k, _set_active(True, started_ms))
            for k in _garbage(rows, cutoff, keep_one_per_group=bucket is ctx.store.consumers):
                await bucket.delete(k)


def _garbage(
    rows: list[tuple[str, dict[str, Any]]], cutoff_ms: int, *, keep_one_per_group: bool
) -> list[str]:
    """§7.3 GC: inactive rows older than the retention go; for consumers one row per group
    stays, so the group (its DLS tracking, §5.1 step 6) outlives its members."""

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


async def _drop_notification(ctx: Context, payload: bytes) -> None:
    # §12.6: there is no Slack integration, so `send_notification` stays false and any
    # notification an SDK sends anyway is only logged.
    log.info("notification (no integration configured): %r", payload[:200])
