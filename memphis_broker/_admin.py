"""Operator actions the real broker exposes only in its UI (docs/protocol.md §4,
docs/protocol.md §9.5): resend poison messages, change a station's DLS configuration, delete a
station with a
``remove_station`` push. They work directly on the shared KV state, so they need no running
control plane and can run from the CLI against any broker.

Connections made here fail fast with one readable line (:class:`AdminError`): nats-py's own
initial connect retries for minutes and reports every attempt, which is right for a
long-running service and wrong for a command an operator is waiting on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client

from memphis_broker._context import CLIENTS_UPDATES, Context
from memphis_broker._jsapi import JSApi
from memphis_broker._stations import destroy_station_resources
from memphis_broker._store import Store, key
from memphis_core.memphis._names import internal_name

__all__ = [
    "AdminError",
    "admin_context",
    "connect_once",
    "jetstream_ready",
    "remove_station",
    "set_dls_configuration",
]

JS_API_INFO: Final = "$JS.API.INFO"


class AdminError(Exception):
    """An operator-facing failure; ``str()`` is one line naming what failed and where.

    Attributes:
        retryable: True if waiting may help (nothing listening yet, JetStream not ready);
            False for a rejected login.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def _plain(servers: str | list[str]) -> str:
    return servers if isinstance(servers, str) else ",".join(servers)


async def connect_once(
    servers: str | list[str], *, timeout: float = 3.0, name: str = "MEMPHIS admin", **auth: Any
) -> Client:
    """Connect, trying each server once or twice, within about ``timeout`` seconds.

    Args:
        servers: NATS URL(s).
        timeout: seconds for each connection attempt.
        auth: ``token=`` or ``user=``/``password=``.

    Raises:
        AdminError: nothing answered (retryable) or the server refused the credentials (not).
    """
    errors: list[Exception] = []

    async def record(err: Exception) -> None:
        errors.append(err)  # reported once, below, instead of once per attempt

    try:
        return await nats.connect(
            servers=servers,
            name=name,
            allow_reconnect=False,
            # nats-py treats 0 as "forever" on the initial connect; 1 means two attempts.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            connect_timeout=timeout,
            error_cb=record,
            **auth,
        )
    except Exception as err:
        cause = errors[-1] if errors and isinstance(err, nats.errors.NoServersError) else err
        text = str(cause).removeprefix("nats: ").strip("'") or type(cause).__name__
        if "authorization violation" in text.lower():
            raise AdminError(
                f"{_plain(servers)} rejected the credentials (authorization violation): "
                "check --token or --nats-user/--nats-password",
                retryable=False,
            ) from None
        if isinstance(cause, ConnectionRefusedError):
            text = "connection refused"
        raise AdminError(f"cannot connect to {_plain(servers)}: {text}") from None


async def jetstream_ready(nc: Client, timeout: float = 2.0) -> dict[str, Any]:
    """Ask ``$JS.API.INFO`` once; return the account info when JetStream answers.

    In a cluster this answers only once a meta leader is elected.

    Raises:
        AdminError: no JetStream (no responders), no answer in ``timeout`` seconds, or a
            JetStream error such as "temporarily unavailable" (all retryable).
    """
    try:
        msg = await nc.request(JS_API_INFO, b"", timeout=timeout)
    except nats.errors.NoRespondersError:
        raise AdminError("JetStream is not enabled or not ready (no responders)") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise AdminError(f"JetStream did not answer within {timeout:g} s") from None
    try:
        doc: dict[str, Any] = json.loads(msg.data)
    except ValueError:
        raise AdminError("JetStream sent an unreadable answer") from None
    err = doc.get("error")
    if err:
        text = err.get("description", err) if isinstance(err, dict) else err
        raise AdminError(f"JetStream is not ready: {text}")
    return doc


@asynccontextmanager
async def admin_context(
    servers: str | list[str],
    dls_retention_hours: float = 3.0,
    *,
    timeout: float = 3.0,
    **auth: Any,
) -> AsyncIterator[Context]:
    """A handler context on a fresh connection (``auth``: token= or user=/password=).

    Raises:
        AdminError: no connection, rejected credentials, or JetStream not available, each
            within about ``timeout`` seconds.
    """
    nc = await connect_once(servers, timeout=timeout, **auth)
    try:
        try:
            await jetstream_ready(nc, timeout)
        except AdminError as err:
            raise AdminError(f"{_plain(servers)}: {err}") from None
        js = nc.jetstream(timeout=timeout)
        try:
            store = await asyncio.wait_for(Store.open(js, dls_retention_hours * 3600), timeout * 2)
        except (nats.errors.Error, TimeoutError) as err:
            raise AdminError(
                f"{_plain(servers)}: cannot open the control-plane state: {err or 'timeout'}"
            ) from None
        yield Context(nc=nc, js=js, api=JSApi(nc), store=store, users=None)
    finally:
        if not nc.is_closed:
            # A failed flush changes nothing: the command's outcome is already decided.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.flush(), timeout)
            await nc.close()


async def set_dls_configuration(
    ctx: Context, station: str, *, poison: bool | None = None, schemaverse: bool | None = None
) -> bool:
    """Change a station's DLS flags and push ``schemaverse_to_dls`` to the SDKs.

    Quirk fixed (docs/protocol.md §4): the real broker pushes the *previous* schemaverse value; we
    push the
    new one. Returns False if the station does not exist.
    """

    def fn(doc: dict[str, Any]) -> dict[str, Any]:
        if poison is not None:
            doc["dls_configuration"]["poison"] = poison
        if schemaverse is not None:
            doc["dls_configuration"]["schemaverse"] = schemaverse
        return doc

    name = station.lower()
    doc = await ctx.store.stations.mutate(key(name), fn)
    if doc is None:
        return False
    await ctx.publish_json(
        CLIENTS_UPDATES,
        {
            "station_name": internal_name(name),
            "type": "schemaverse_to_dls",
            "update": bool(doc["dls_configuration"]["schemaverse"]),
        },
    )
    await ctx.nc.flush()
    return True


async def remove_station(ctx: Context, station: str) -> bool:
    """Delete a station like the UI does: resources, then a ``remove_station`` push
    (docs/protocol.md §4)."""
    name = station.lower()
    doc = await ctx.station(name)
    if doc is None:
        return False
    await destroy_station_resources(ctx, doc)
    await ctx.publish_json(
        CLIENTS_UPDATES,
        {"station_name": internal_name(name), "type": "remove_station", "update": None},
    )
    await ctx.nc.flush()
    return True
