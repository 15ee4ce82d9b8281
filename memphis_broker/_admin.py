"""Operator actions the real broker exposes only in its UI (memphis-broker-protocol.md §2.10,
§5.5): resend poison messages, change a station's DLS configuration, delete a station with a
``remove_station`` push. They work directly on the shared KV state, so they need no running
control plane and can run from the CLI against any broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats

from memphis_broker._context import CLIENTS_UPDATES, Context
from memphis_broker._jsapi import JSApi
from memphis_broker._stations import destroy_station_resources
from memphis_broker._store import Store, key
from memphis_core.memphis._names import internal_name

__all__ = ["admin_context", "remove_station", "set_dls_configuration"]


@asynccontextmanager
async def admin_context(
    servers: str | list[str], dls_retention_hours: float = 3.0, **auth: Any
) -> AsyncIterator[Context]:
    """A handler context on a fresh connection (``auth``: token= or user=/password=)."""
    nc = await nats.connect(servers=servers, name="MEMPHIS admin", **auth)
    try:
        js = nc.jetstream(timeout=10.0)
        store = await Store.open(js, dls_retention_hours * 3600)
        yield Context(nc=nc, js=js, api=JSApi(nc), store=store, users=None)
    finally:
        await nc.flush()
        await nc.close()


async def set_dls_configuration(
    ctx: Context, station: str, *, poison: bool | None = None, schemaverse: bool | None = None
) -> bool:
    """Change a station's DLS flags and push ``schemaverse_to_dls`` to the SDKs.

    Quirk fixed (§2.10): the real broker pushes the *previous* schemaverse value; we push the
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
    """Delete a station like the UI does: resources, then a ``remove_station`` push (§2.10)."""
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
