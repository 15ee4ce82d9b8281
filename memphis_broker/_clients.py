"""Producers and consumers: the four create/destroy request subjects.

docs/protocol.md §6.1-docs/protocol.md §7.12 and §7.3. Rows live in the ``producers``/``consumers``
buckets. Consumers own one JetStream durable per partition, named after the group.

Idempotent creates (docs/broker.md, "Cluster safety"): an SDK whose request timed out retries
it, and with several control-plane instances the first one may have stored the row before it
died. So a row is keyed by what identifies it, not by a fresh id: a producer by (station,
name, connection id), a consumer by (station, group, name, connection id), and it is written
with create-or-update under revision checks. The same request twice, on one instance or two,
leaves one row. Producer names are still not unique (docs/protocol.md §6.1 step 7): two
connections, or two
stations, get two rows. One connection registers a name once: the client caches its
producers and consumers by name, and the destroy requests match on (name, connection id).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from memphis_broker._context import Context, now_ms
from memphis_broker._dls import remove_group_everywhere
from memphis_broker._gojson import GoJSONError, Spec, decode, encode
from memphis_broker._jsapi import JSApiError
from memphis_broker._schemas import EMPTY_SCHEMA_UPDATE, schema_update_for
from memphis_broker._stations import create_default_station, stream_names
from memphis_broker._store import key
from memphis_core.memphis._names import internal_name, name_error

__all__ = [
    "consumer_config",
    "handle_consumer_create",
    "handle_consumer_destroy",
    "handle_producer_create",
    "handle_producer_destroy",
]

_TYPES: Final = ("application", "connector")
_NS_PER_MS: Final = 1_000_000
DEFAULT_ACK_WAIT_MS: Final = 30_000
MAX_DELIVER_CAP: Final = 10

PRODUCER_SPEC: Final[Spec] = {
    "name": "string",
    "station_name": "string",
    "connection_id": "string",
    "producer_type": "string",
    "req_version": "int",
    "username": "string",
    "tenant_name": "string",
    "app_id": "string",
    "sdk_lang": "string",
}
# docs/protocol.md §6.1 "edge case": a body that fails the current decode but fits the oldest shape
# is v0.
PRODUCER_V0_SPEC: Final[Spec] = {
    "name": "string",
    "station_name": "string",
    "connection_id": "string",
    "producer_type": "string",
    "username": "string",
    "tenant_name": "string",
}
CONSUMER_SPEC: Final[Spec] = {
    "name": "string",
    "station_name": "string",
    "connection_id": "string",
    "consumer_type": "string",
    "consumers_group": "string",
    "max_ack_time_ms": "int",
    "max_msg_deliveries": "int",
    "username": "string",
    "start_consume_from_sequence": "uint64",
    "last_messages": "int64",
    "req_version": "int",
    "tenant_name": "string",
    "app_id": "string",
    "sdk_lang": "string",
}
DESTROY_SPEC: Final[Spec] = {
    "station_name": "string",
    "name": "string",
    "username": "string",
    "connection_id": "string",
    "req_version": "int",
    "tenant_name": "string",
}
DESTROY_V0_SPEC: Final[Spec] = {
    "station_name": "string",
    "name": "string",
    "username": "string",
    "connection_id": "string",
    "tenant_name": "string",
}


def row_id(*parts: str) -> str:
    """A KV-key-safe id derived from the fields that identify a row (see the module doc)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _producer_reply(station: dict[str, Any] | None, update: dict[str, Any], error: str) -> bytes:
    # docs/protocol.md §6.1 step 8: key order matters to byte-exact comparisons, so build it in
    # that order.
    ok = station is not None and not error
    parts = station.get("partitions") if station else None
    return encode(
        {
            "schema_update": update,
            "partitions_update": {"partitions_list": (parts or None) if ok else None},
            "schemaverse_to_dls": bool(
                ok and station and station["dls_configuration"]["schemaverse"]
            ),
            # no Slack integration in this broker (docs/protocol.md §9.2)
            "send_notification": False,
            "station_version": int(station["version"]) if ok and station else 0,
            "station_partitions_first_functions": {} if ok else None,
            "error": error,
        }
    )


async def _station_for(
    ctx: Context, name: str, username: str, *, version: int, upgrade: str, missing: str
) -> dict[str, Any] | str:
    """Steps shared by producer and consumer create: find or auto-create the station."""
    station = await ctx.station(name)
    if station is None:
        if version < 2:
            return missing
        err = await create_default_station(ctx, name, username)
        if err:
            return err
        station = await ctx.station(name)
        if station is None:  # destroyed concurrently
            return f"Station {name} does not exist"
    elif version < 2 and station.get("partitions"):
        return upgrade
    return station


def _apply_version_rule(req: dict[str, Any]) -> None:
    # docs/protocol.md §6.1 "Version handling": before v4 the app id is the connection id and
    # sdk_lang is unset.
    if req["req_version"] < 4:
        req["app_id"] = req["connection_id"]
        req["sdk_lang"] = ""


def _row_common(req: dict[str, Any], username: str, station: dict[str, Any]) -> dict[str, Any]:
    """The fields a producer's and a consumer's row share, last in both."""
    return {
        "username": username,
        "partitions": station.get("partitions") or [],
        "version": req["req_version"],
        "sdk": req["sdk_lang"],
        "app_id": req["app_id"],
        "is_active": True,
        "updated_at": now_ms(),
    }


async def _create_producer(ctx: Context, req: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    station_name = req["station_name"].lower()
    err = name_error(station_name, "Station")
    if err:
        return None, err
    name = req["name"].lower()
    err = name_error(name, "Producer")
    if err:
        return None, err
    ptype = req["producer_type"].lower()
    if ptype not in _TYPES:
        return None, "producer type has to be one of the following application/connector"
    username = req["username"]
    if not ctx.user_exists(username):
        return None, f"User {username} does not exist"
    station = await _station_for(
        ctx,
        station_name,
        username,
        version=req["req_version"],
        upgrade="to produce to this station please upgrade your SDK version",
        missing="this station does not exist, a default station can not be created automatically, "
        "please upgrade your SDK version",
    )
    if isinstance(station, str):
        return None, station
    _apply_version_rule(req)
    if username.startswith("$") and name != "gui":
        ptype = "connector"  # docs/protocol.md §6.1 step 7: internal users
    row = {
        "name": name,
        "station": station_name,
        "type": ptype,
        "connection_id": req["connection_id"],
        **_row_common(req, username, station),
    }
    rid = row_id(name, req["connection_id"])
    await ctx.store.producers.upsert(f"{key(station_name)}.{rid}", row)
    return station, ""


async def handle_producer_create(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §6.1; JSON reply (plain text only for a v0-shaped body)."""
    try:
        req = decode(payload, PRODUCER_SPEC, "CreateProducerRequestV3")
        legacy = False
    except GoJSONError as first:
        try:
            req = decode(payload, PRODUCER_V0_SPEC, "CreateProducerRequestV0")
        except GoJSONError:
            return _producer_reply(None, EMPTY_SCHEMA_UPDATE, str(first))
        req.update(req_version=0, app_id="", sdk_lang="")
        legacy = True
    station, err = await _create_producer(ctx, req)
    if legacy:
        return err.encode()
    if station is None:
        return _producer_reply(None, EMPTY_SCHEMA_UPDATE, err)
    update, err = await schema_update_for(ctx, station)
    return _producer_reply(station, update, err)


def _destroy_request(payload: bytes, struct: str) -> tuple[dict[str, Any], str, str] | bytes:
    """Decode a producer's or consumer's destroy request and check its station's name.

    Returns the request, the station's name and the client's name, both lower-cased; or the
    reply that ends the request: the (v1) decode error's text, or the name rule it breaks.
    """
    try:
        req = decode(payload, DESTROY_SPEC, struct)
    except GoJSONError as first:
        # docs/protocol.md §6.8: a failed v1 decode falls back to v0 semantics.
        try:
            req = decode(payload, DESTROY_V0_SPEC, struct + "V0")
        except GoJSONError:
            return str(first).encode()
        req["req_version"] = 0
    station_name = req["station_name"].lower()
    err = name_error(station_name, "Station")
    if err:
        return err.encode()
    return req, station_name, req["name"].lower()


def _row_matches(row: dict[str, Any], name: str, req: dict[str, Any]) -> bool:
    if row["name"] != name:
        return False
    # v0 requests carry no usable connection id: every row with that name matches (docs/protocol.md
    # §6.8).
    return bool(req["req_version"] < 1 or row["connection_id"] == req["connection_id"])


async def handle_producer_destroy(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §6.8; plain-text reply."""
    got = _destroy_request(payload, "RemoveProducerRequestV1")
    if isinstance(got, bytes):
        return got
    req, station_name, name = got
    matched = False
    for k, row in await ctx.store.producers.scan(f"{key(station_name)}.*"):
        if _row_matches(row, name, req):
            await ctx.store.producers.delete(k)
            matched = True
    if not matched:
        # Quirk fixed (docs/protocol.md §6.8): the real broker reports success when nothing
        # matched. The SDKs
        # treat "not exist" as success, so the intended text is safe to send.
        return f"Producer {req['name']} at station {req['station_name']} does not exist".encode()
    return b""


def _deliver_policy(start: int, last: int, last_seq: int) -> dict[str, Any]:
    """docs/protocol.md §7.4, evaluated in order; ``last_seq`` is this partition stream's
    ``state.last_seq``."""
    if last == 0 and start == 1:
        return {"deliver_policy": "new"}
    if last > 0:
        return {"deliver_policy": "by_start_sequence", "opt_start_seq": max(1, last_seq - last + 1)}
    if start > 1:
        return {"deliver_policy": "by_start_sequence", "opt_start_seq": start}
    return {"deliver_policy": "all"}


def consumer_config(stream: str, durable: str, ack_ms: int, max_deliver: int) -> dict[str, Any]:
    """The durable of docs/protocol.md §7.3 (deliver policy added by the caller)."""
    return {
        "durable_name": durable,
        "ack_policy": "explicit",
        "ack_wait": (ack_ms if ack_ms > 0 else DEFAULT_ACK_WAIT_MS) * _NS_PER_MS,
        "max_deliver": max_deliver if 1 <= max_deliver <= MAX_DELIVER_CAP else MAX_DELIVER_CAP,
        "filter_subject": f"{stream}.final",
        "replay_policy": "instant",
        "max_ack_pending": -1,
        "headers_only": False,
    }


async def _ensure_durables(ctx: Context, station: dict[str, Any], req: dict[str, Any]) -> None:
    """Create the group's durable on every partition, or update AckWait/MaxDeliver in place.

    docs/protocol.md §7.4 quirk fixed: with a single partition and ``last_messages > 0`` the real
    broker never
    creates the durable; we create it like for any partition count. An existing durable keeps
    its deliver position (docs/protocol.md §7.3: only the editable fields change).
    """
    durable = internal_name(req["group"])
    for stream in stream_names(station):
        want = consumer_config(stream, durable, req["max_ack_time_ms"], req["max_msg_deliveries"])
        info = await ctx.api.consumer_info(stream, durable)
        if info is None:
            last_seq = 0
            if req["last_messages"] > 0:
                sinfo = await ctx.api.stream_info(stream)
                last_seq = int(sinfo["state"]["last_seq"]) if sinfo else 0
            want.update(
                _deliver_policy(req["start_consume_from_sequence"], req["last_messages"], last_seq)
            )
            try:
                await ctx.api.create_consumer(stream, want)
                continue
            except JSApiError:
                # A concurrent create of the same group (a retried request on another
                # instance) may have made it first with a slightly different start sequence:
                # then the existing durable is the group's, as if we had found it above.
                info = await ctx.api.consumer_info(stream, durable)
                if info is None:
                    raise
        cur: dict[str, Any] = info["config"]
        if cur.get("ack_wait") != want["ack_wait"] or cur.get("max_deliver") != want["max_deliver"]:
            cur.update(ack_wait=want["ack_wait"], max_deliver=want["max_deliver"])
            await ctx.api.create_consumer(stream, cur)


async def _create_consumer(ctx: Context, req: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    start, last = req["start_consume_from_sequence"], req["last_messages"]
    if start <= 0:
        return None, "startConsumeFromSequence has to be a positive number"
    if last < -1:
        return None, "min value for LastMessages is -1"
    if start > 1 and last > -1:
        return None, (
            "consumer creation options can't contain both startConsumeFromSequence and lastMessages"
        )
    name = req["name"].lower()
    err = name_error(name, "Consumer")
    if err:
        return None, err
    group = req["consumers_group"].lower() or name
    err = name_error(group, "Consumer")
    if err:
        return None, err
    req["group"] = group
    ctype = req["consumer_type"].lower()
    if ctype not in _TYPES:
        return None, (
            f"consumer type has to be one of the following application/connector and not {ctype}"
        )
    station_name = req["station_name"].lower()
    err = name_error(station_name, "Station")
    if err:
        return None, err
    username = req["username"]
    if not ctx.user_exists(username):
        return None, "user does not exist"
    station = await _station_for(
        ctx,
        station_name,
        username,
        version=req["req_version"],
        upgrade="to consume from this station please upgrade your SDK version",
        missing="This station does not exist, a default station can not be created automatically, "
        "please upgrade your SDK version",
    )
    if isinstance(station, str):
        return None, station
    st = key(station_name)
    members = [
        row
        for _k, row in await ctx.store.consumers.scan(f"{st}.{key(group)}.*")
        if row["is_active"] and row["type"] == "application"
    ]
    if members and req["req_version"] == 1:
        first = members[0]
        if first["start_consume_from_seq"] != start or first["last_msgs"] != last:
            return None, (
                "consumer already exists with different uneditable configuration parameters "
                "(StartConsumeFromSequence/LastMessages)"
            )
        if first["partitions"] != (station.get("partitions") or []):
            return None, (
                "consumer already exists with different uneditable partition list: "
                "partition numbers: "
            )
    try:
        await _ensure_durables(ctx, station, req)
    except JSApiError as err_js:
        return None, str(err_js)
    _apply_version_rule(req)
    row = {
        "name": name,
        "station": station_name,
        "type": "connector" if username.startswith("$") else ctype,
        "connection_id": req["connection_id"],
        "consumers_group": group,
        "max_ack_time_ms": req["max_ack_time_ms"],
        "max_msg_deliveries": req["max_msg_deliveries"],
        "start_consume_from_seq": start,
        "last_msgs": last,
        **_row_common(req, username, station),
    }
    rid = row_id(name, req["connection_id"])
    await ctx.store.consumers.upsert(f"{st}.{key(group)}.{rid}", row)
    return station, ""


async def handle_consumer_create(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §7.2: errors as plain text, success as JSON.

    Quirk fixed: the real broker follows an error text with a second (JSON) reply; we send one.
    """
    try:
        req = decode(payload, CONSUMER_SPEC, "CreateConsumerRequestV3")
    except GoJSONError as exc:
        return str(exc).encode()
    station, err = await _create_consumer(ctx, req)
    if station is None:
        return err.encode()
    if not station.get("partitions") and req["req_version"] < 2:
        return b""
    update, err = await schema_update_for(ctx, station)
    if err:
        return encode({"error": err})
    return encode(
        {
            "schema_update": update,
            "partitions_update": {"partitions_list": station.get("partitions") or None},
            "error": "",
        }
    )


async def handle_consumer_destroy(ctx: Context, payload: bytes) -> bytes:
    """docs/protocol.md §7.12; plain-text reply."""
    got = _destroy_request(payload, "RemoveConsumerRequestV1")
    if isinstance(got, bytes):
        return got
    req, station_name, name = got
    st = key(station_name)
    rows = await ctx.store.consumers.scan(f"{st}.>")
    doomed = [(k, row) for k, row in rows if _row_matches(row, name, req)]
    if not doomed:
        return f"Consumer {req['name']} at station {req['station_name']} does not exist".encode()
    # docs/protocol.md §7.12 step 1 deletes exactly one matching row (v0 deletes every row with
    # that name).
    if req["req_version"] >= 1:
        doomed = doomed[:1]
    gone = {k for k, _row in doomed}
    for k in gone:
        await ctx.store.consumers.delete(k)
    # Count the remaining members from a scan taken *after* our delete: with the scan from
    # before it, two members leaving at once each saw the other (the durable leaked), and a
    # member joining meanwhile was missed (its fresh durable was deleted under it).
    after = await ctx.store.consumers.scan(f"{st}.>")
    for group in {row["consumers_group"] for _k, row in doomed}:
        still = [row for _k, row in after if row["consumers_group"] == group and row["is_active"]]
        if still:
            continue
        # Last active member gone: the durable goes, and so does the group's poison tracking.
        station = await ctx.station(station_name)
        if station is not None:
            for stream in stream_names(station):
                await ctx.api.delete_consumer(stream, internal_name(group))
        await remove_group_everywhere(ctx, station_name, group)
    return b""
