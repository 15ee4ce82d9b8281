"""Stations: ``$memphis_station_creations`` / ``$memphis_station_destructions``.

One JetStream stream per partition, ``<intern>$<p>`` with the single subject ``<intern>$<p>.>``
(docs/protocol.md §5.5). Idempotent produce needs no proxy: our client sends the
message id as both ``msg-id`` (the fork's dedup header) and ``Nats-Msg-Id`` (stock JetStream's),
so the stream's ``duplicate_window`` below deduplicates on stock NATS (docs/protocol.md §6.5).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

from memphis_broker._context import (
    GLOBAL_TENANT_ID,
    Context,
    now_ms,
    split_tenant,
    station_request,
)
from memphis_broker._gojson import Spec
from memphis_broker._jsapi import ERR_REPLICAS_NOT_SUPPORTED, JSApiError
from memphis_broker._store import key
from memphis_core.memphis._introspection import stream_settings
from memphis_core.memphis._names import internal_name, name_error

#: docs/protocol.md §5.4 step 6 prints this limit; the OSS broker never enforces it (see
#: _build_station).
MAX_PARTITIONS: Final = 10_000
# JetStream: "stream name already in use with a different configuration".
ERR_STREAM_NAME_IN_USE: Final = 10058

__all__ = [
    "create_default_station",
    "destroy_station_resources",
    "handle_station_create",
    "handle_station_destroy",
    "normalise_replicas",
    "repair_interrupted_creates",
    "stream_config",
    "stream_names",
]

log = logging.getLogger("memphis_broker.control")
# A partition stream: ``<internal>$<p>`` (docs/protocol.md §5.5).
_PARTITION_STREAM: Final = re.compile(r"(?P<intern>[^$]+)\$(?P<partition>[1-9][0-9]*)")

RETENTION_TYPES: Final = ("message_age_sec", "messages", "bytes", "ack_based")
DEFAULT_RETENTION_S: Final = 3600
DEFAULT_WINDOW_MS: Final = 120_000
MAX_WINDOW_MS: Final = 86_400_000
_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000

CREATE_SPEC: Final[Spec] = {
    "name": "string",
    "schema_name": "string",
    "retention_type": "string",
    "retention_value": "int",
    "storage_type": "string",
    "replicas": "int",
    "idempotency_window_in_ms": "int64",
    "dls_configuration": {"poison": "bool", "schemaverse": "bool"},
    "username": "string",
    "tiered_storage_enabled": "bool",
    "tenant_name": "string",
    "partitions_number": "int",
    "dls_station": "string",
}
DESTROY_SPEC: Final[Spec] = {
    "station_name": "string",
    "username": "string",
    "tenant_name": "string",
}


def normalise_replicas(replicas: int) -> int:
    """docs/protocol.md §5.4 step 10: <=0 -> 1, 2 or 4 -> 3 (odd quorum sizes only), >5 -> 5."""
    if replicas <= 0:
        return 1
    if replicas in (2, 4):
        return 3
    return min(replicas, 5)


def stream_names(station: dict[str, Any]) -> list[str]:
    intern = internal_name(station["name"])
    parts: list[int] = station.get("partitions") or []
    # legacy version-0 station (docs/protocol.md §5.5): one stream named after the station
    if not parts:
        return [intern]
    return [f"{intern}${p}" for p in parts]


def stream_config(station: dict[str, Any], partition: int) -> dict[str, Any]:
    """The stream config of docs/protocol.md §5.5 for one partition, in JetStream's own JSON."""
    intern = internal_name(station["name"])
    rtype: str = station["retention_type"]
    value: int = station["retention_value"]
    name = f"{intern}${partition}"
    return {
        "name": name,
        "subjects": [f"{name}.>"],
        "retention": "interest" if rtype == "ack_based" else "limits",
        "max_consumers": -1,
        "max_msgs": value if rtype == "messages" and value > 0 else -1,
        "max_bytes": value if rtype == "bytes" and value > 0 else -1,
        "max_age": value * _NS_PER_S if rtype == "message_age_sec" and value > 0 else 0,
        "max_msgs_per_subject": -1,
        "discard": "old",
        "storage": "memory" if station["storage_type"] == "memory" else "file",
        "num_replicas": station["replicas"],
        "duplicate_window": station["idempotency_window_ms"] * _NS_PER_MS,
        "no_ack": False,
    }


def _default_station(name: str, username: str) -> dict[str, Any]:
    # docs/protocol.md §5.6: the recipe for auto-created stations (producer/consumer on a missing
    # station, and
    # a missing dls_station).
    return {
        "name": name,
        "retention_type": "message_age_sec",
        "retention_value": DEFAULT_RETENTION_S,
        "storage_type": "file",
        "replicas": 1,
        "idempotency_window_ms": DEFAULT_WINDOW_MS,
        "dls_configuration": {"poison": True, "schemaverse": True},
        "schema_name": "",
        "schema_version_number": 0,
        "partitions": [1],
        "version": 2,
        "is_native": True,
        "dls_station": "",
        "tiered_storage_enabled": False,
        "created_by": username,
        "created_at": now_ms(),
    }


async def _materialise(ctx: Context, station: dict[str, Any]) -> str | None:
    """Create the streams and then the record; return an error text or None.

    Streams first, record second: a reader that sees the record can rely on the streams. On a
    failure only the streams this call created are removed, so a concurrent creator on another
    instance never loses its streams.
    """
    created: list[str] = []
    for p in station["partitions"]:
        cfg = stream_config(station, p)
        try:
            existed = await ctx.api.stream_info(cfg["name"]) is not None
            await ctx.api.create_stream(cfg)
        except JSApiError as err:
            for name in created:
                await ctx.api.delete_stream(name)
            if err.err_code == ERR_STREAM_NAME_IN_USE and await _record_appears(ctx, station):
                # A concurrent create of the same station (another request, another
                # instance, an auto-create) got there first with other options: the station
                # exists, which SDKs treat as success (docs/protocol.md §5.4 step 14).
                return f"Station{station['name']} already exists"
            if err.err_code == ERR_REPLICAS_NOT_SUPPORTED:
                return (
                    "station can not be created, probably since replicas count is larger "
                    "than the cluster size"
                )
            return str(err)
        if not existed:
            created.append(cfg["name"])
    if await ctx.store.stations.create(key(station["name"]), station) is None:
        got = await ctx.store.stations.get(key(station["name"]))
        if got is not None and got[0] == station:
            # Our own record: the create was retried through a leader election after its
            # first attempt had in fact been stored (the record holds our created_at).
            return None
        # docs/protocol.md §5.4 step 14: the uniqueness race text (no space after "Station"); SDKs
        # accept it.
        return f"Station{station['name']} already exists"
    return None


async def _record_appears(ctx: Context, station: dict[str, Any], wait: float = 5.0) -> bool:
    """Wait (bounded) for a concurrent creator to store the station record after its streams."""
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.01
    while True:
        if await ctx.store.stations.get(key(station["name"])) is not None:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(delay)  # polling interval of a bounded condition check
        delay = min(delay * 2, 0.2)


async def create_default_station(ctx: Context, name: str, username: str) -> str | None:
    """Auto-create ``name`` with the docs/protocol.md §5.6 recipe; None on success or if it
    appeared meanwhile."""
    err = await _materialise(ctx, _default_station(name, username))
    if err is not None and "already exist" in err:
        return None
    return err


def _retention(rtype: str, value: int) -> tuple[str, int] | str:
    rtype = rtype.lower()
    if not rtype:
        return "message_age_sec", DEFAULT_RETENTION_S
    if rtype not in RETENTION_TYPES:
        return "retention type can be one of the following message_age_sec/messages/bytes/ack_based"
    if value <= 0 and rtype != "ack_based":
        return "message_age_sec", DEFAULT_RETENTION_S
    return rtype, value


def _window(window: int, rtype: str, value: int) -> int | str:
    if window <= 0:
        window = DEFAULT_WINDOW_MS
    elif window < 100:
        window = 100
    if window > MAX_WINDOW_MS:
        return "idempotency window can not exceed 24 hours"
    if rtype == "message_age_sec" and value * 1000 < window:
        return "idempotency window cannot be greater than the station retention"
    return window


async def _build_station(ctx: Context, req: dict[str, Any], name: str) -> dict[str, Any] | str:
    """Steps 6-11 of docs/protocol.md §5.4: the station record, or the error text."""
    partitions: int = req["partitions_number"]
    if partitions == 0:
        return "you are using an old SDK, make sure to update your SDK"
    if partitions < 1 or partitions > MAX_PARTITIONS:
        # Verbatim, including the two spaces and the trailing ", " (docs/protocol.md §5.4 step 6).
        # Deviation:
        # the real OSS broker never enforces the 10000 it prints; we do, since one request
        # for a billion partitions would otherwise exhaust the control plane's memory.
        return (
            f"cannot create station with {partitions} partitions (max:10000 min:1): "
            f"Station -  {name}, "
        )
    schema_name = req["schema_name"].lower()
    schema_version = 0
    if schema_name:
        got = await ctx.store.schemas.get(key(schema_name))
        if got is None:
            # Quirk fixed (docs/protocol.md §5.4 step 7): the real broker replies empty and creates
            # nothing.
            return f"Schema {schema_name} does not exist"
        schema_version = _active_version(got[0])
    retention = _retention(req["retention_type"], req["retention_value"])
    if isinstance(retention, str):
        return retention
    storage = req["storage_type"].lower() or "file"
    if storage not in ("file", "memory"):
        return "storage type can be one of the following file/memory"
    window = _window(req["idempotency_window_in_ms"], *retention)
    if isinstance(window, str):
        return window
    return {
        "name": name,
        "retention_type": retention[0],
        "retention_value": retention[1],
        "storage_type": storage,
        "replicas": normalise_replicas(req["replicas"]),
        "idempotency_window_ms": window,
        "dls_configuration": dict(req["dls_configuration"]),
        "schema_name": schema_name,
        "schema_version_number": schema_version,
        "partitions": list(range(1, partitions + 1)),
        "version": 2,
        "is_native": True,
        "dls_station": req["dls_station"].lower(),
        "tiered_storage_enabled": req["tiered_storage_enabled"],
        "created_by": req["username"],
        "created_at": now_ms(),
    }


def _active_version(schema: dict[str, Any]) -> int:
    for v in schema["versions"]:
        if v["active"]:
            return int(v["version_number"])
    return 0


def _tenant_request(
    payload: bytes, spec: Spec, struct: str, field: str, where: str
) -> tuple[dict[str, Any], str, str] | bytes:
    """:func:`station_request`, then docs/protocol.md §5.4 step 2: a tenant other than the
    global one does not exist (``where`` is the broker function its reply names).

    Returns the request, the station name and the username without its tenant; or the reply.
    """
    got = station_request(payload, spec, struct, field)
    if isinstance(got, bytes):
        return got
    req, name = got
    username, tenant = split_tenant(req["username"])
    if tenant is not None and tenant != GLOBAL_TENANT_ID:
        return f"{where}: Station {name}: Tenant with id {tenant} does not exist".encode()
    return req, name, username


async def handle_station_create(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §5.4; plain-text reply, empty on success (also for an existing station)."""
    got = _tenant_request(
        payload, CREATE_SPEC, "CreateStationRequest", "name", "createStationDirect"
    )
    if isinstance(got, bytes):
        return got
    req, name, username = got
    if await ctx.station(name) is not None:
        return b""  # docs/protocol.md §5.4 step 3: idempotent, no comparison of parameters
    if not ctx.user_exists(username):
        # Quirk fixed (docs/protocol.md §5.4 step 4): the real broker replies empty and creates
        # nothing.
        return f"User {username} does not exist".encode()
    station = await _build_station(ctx, req, name)
    if isinstance(station, str):
        return station.encode()
    dls = station["dls_station"]
    if dls:
        err = name_error(dls, "Station")
        if err:
            return err.encode()
        if dls != name and await ctx.station(dls) is None:
            err = await create_default_station(ctx, dls, username)
            if err:
                return err.encode()
    err = await _materialise(ctx, station)
    return (err or "").encode()


async def destroy_station_resources(ctx: Context, station: dict[str, Any]) -> None:
    """docs/protocol.md §5.7 step 6: streams (with their durables), DLS, producer and consumer
    rows, every
    ``dls_station`` reference to it, and the record itself."""
    name = station["name"]
    st = key(name)
    await asyncio.gather(*(ctx.api.delete_stream(s) for s in stream_names(station)))
    for bucket, pattern in (
        (ctx.store.producers, f"{st}.>"),
        (ctx.store.consumers, f"{st}.>"),
        (ctx.store.dls, f"m.{st}.>"),
        (ctx.store.dls, f"i.{st}.>"),
    ):
        for k, _doc in await bucket.scan(pattern):
            await bucket.delete(k)
    for k, doc in await ctx.store.stations.scan():
        if doc.get("dls_station") == name:
            await ctx.store.stations.mutate(k, _clear_dls_station(name))
    await ctx.store.stations.delete(st)


def _clear_dls_station(name: str) -> Any:
    def fn(doc: dict[str, Any]) -> dict[str, Any]:
        if doc.get("dls_station") == name:
            doc["dls_station"] = ""
        return doc

    return fn


async def handle_station_destroy(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §5.7; plain-text reply."""
    got = _tenant_request(
        payload, DESTROY_SPEC, "DestroyStationRequest", "station_name", "removeStationDirectIntern"
    )
    if isinstance(got, bytes):
        return got
    _req, name, _username = got
    station = await ctx.station(name)
    if station is None:
        # docs/protocol.md §5.7 step 5, verbatim (two spaces: the real broker formats an empty
        # row's name).
        return b"Station  does not exist"
    await destroy_station_resources(ctx, station)
    return b""


# -- interrupted creates ----------------------------------------------------------------------


def _orphans(streams: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Station partition streams by internal station name, then partition."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for info in streams:
        config = info["config"]
        m = _PARTITION_STREAM.fullmatch(str(config["name"]))
        if m is None or config.get("subjects") != [f"{config['name']}.>"]:
            continue  # not a station's stream (KV buckets, capture streams, anything else)
        out.setdefault(m["intern"], {})[int(m["partition"])] = config
    return out


def _record_from_streams(intern: str, configs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The station record whose :func:`stream_config` gives these streams (the inverse)."""
    # Read as the client's station introspection reads a stream (one parser of the mapping).
    has = stream_settings(configs[min(configs)])
    rtype, value = has.retention_type, has.retention_value
    if rtype == "message_age_sec" and value <= 0:
        value = DEFAULT_RETENTION_S  # no limit set: the default a create would have stored
    station = _default_station(intern.replace("#", "."), "root")
    station.update(
        retention_type=rtype,
        retention_value=value,
        storage_type=has.storage_type,
        replicas=has.replicas,
        idempotency_window_ms=round(has.idempotency_window * 1000),
        partitions=sorted(configs),
    )
    return station


async def repair_interrupted_creates(ctx: Context, grace_s: float) -> list[str]:
    """Write the record of every station whose streams exist without one; return their names.

    A station create writes its streams first and its record second (:func:`_materialise`);
    a control plane stopped in between leaves streams that no record describes, which a later
    create with other options could not adopt ("name already in use"). Run at start-up: the
    streams are adopted as the station they describe (its retention, storage, replicas,
    idempotency window and partitions; the default DLS settings, no schema, created by root),
    so no stored message is dropped. A create still in flight on another instance writes its
    record within its request budget: only streams still without a record ``grace_s`` seconds
    after they were first seen are adopted, and the record is written compare-and-set.
    """
    candidates = await _unrecorded(ctx)
    if not candidates:
        return []
    await asyncio.sleep(grace_s)  # let any create in flight elsewhere finish (bounded)
    repaired: list[str] = []
    for intern, configs in (await _unrecorded(ctx)).items():
        if intern not in candidates:
            continue
        station = _record_from_streams(intern, configs)
        if await ctx.store.stations.create(key(station["name"]), station) is not None:
            log.warning(
                "station %s: streams %s had no record (an interrupted create); adopted",
                station["name"],
                ", ".join(stream_names(station)),
            )
            repaired.append(station["name"])
    return repaired


async def _unrecorded(ctx: Context) -> dict[str, dict[int, dict[str, Any]]]:
    streams = await ctx.api.list_streams()
    return {
        intern: configs
        for intern, configs in _orphans(streams).items()
        if await ctx.store.stations.get(key(intern.replace("#", "."))) is None
    }
