"""Dead-letter station: poison messages, schema failures, explicit dead-letters, resend, pm-acks.

docs/protocol.md §9. The real broker keeps DLS rows in PostgreSQL; we keep them in the
``memphis_dls`` KV bucket (docs/protocol.md §9.4 allows it), with per-consumer-group poison
tracking in
``poisoned_cgs``. The three inputs arrive through work-queue streams shared by every
control-plane instance, so each event is processed exactly once even with two instances:

* ``$memphis_dls_unacked`` captures the stock advisory ``$JS.EVENT.ADVISORY.CONSUMER.
  MAX_DELIVERIES.>``, which carries no message (docs/protocol.md §9.1): we fetch it by
  ``stream_seq``.
* ``$memphis_dls_schemaverse`` captures ``$memphis_schemaverse_dls`` directly and
  ``$memphis_dls_nacked`` captures ``$memphis_nacked_dls`` (the real broker relays them through
  inner subjects into the same kind of stream; capturing them directly is equivalent and keeps
  reports published while no control plane runs).
"""

from __future__ import annotations

import binascii
import random
from datetime import UTC, datetime
from typing import Any, Final

from memphis_broker._context import Context, now_ms
from memphis_broker._gojson import GoJSONError, Spec, decode
from memphis_broker._store import key
from memphis_core.memphis import _control as rq
from memphis_core.memphis._names import internal_name

__all__ = [
    "INTERNAL_STREAMS",
    "PRODUCED_BY_DLS",
    "drop",
    "list_dls",
    "process_advisory",
    "process_nacked",
    "process_pm_ack",
    "process_schemaverse",
    "remove_group_everywhere",
    "resend",
]

PRODUCED_BY_DLS: Final = "$memphis_dls"
_DAY_NS: Final = 24 * 3600 * 1_000_000_000
# (stream, captured subject, durable) per docs/protocol.md §9.1/§9.2/§9.3.
INTERNAL_STREAMS: Final = (
    (
        "$memphis_dls_unacked",
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
        "$memphis_dls_unacked_consumer",
    ),
    ("$memphis_dls_schemaverse", rq.SCHEMAVERSE_DLS, "$memphis_dls_schemaverse_consumer"),
    ("$memphis_dls_nacked", rq.NACKED_DLS, "$memphis_nacked_dls_consumer"),
)

ADVISORY_SPEC: Final[Spec] = {"stream": "string", "consumer": "string", "stream_seq": "uint64"}
NACKED_SPEC: Final[Spec] = {
    "station_name": "string",
    "error": "string",
    "cg_name": "string",
    "seq": "uint64",
    "partition": "int",
}
SCHEMAVERSE_SPEC: Final[Spec] = {
    "station_name": "string",
    "producer": {"name": "string", "connection_id": "string"},
    "message": {"data": "string", "headers": "any", "size": "int", "time_sent": "any"},
    "validation_error": "string",
    "partition_number": "int",
}
PM_ACK_SPEC: Final[Spec] = {"id": "int", "cg_name": "string"}


def stream_config(name: str, subject: str, replicas: int = 1) -> dict[str, Any]:
    """The capture streams of docs/protocol.md §9.1: WorkQueue, 24 h, file, discard old;
    ``replicas`` is
    ``min(3, cluster size)`` so that a node going down does not stop DLS processing."""
    return {
        "name": name,
        "subjects": [subject],
        "retention": "workqueue",
        "max_age": _DAY_NS,
        "storage": "file",
        "discard": "old",
        "max_consumers": -1,
        "num_replicas": replicas,
    }


def durable_config(durable: str) -> dict[str, Any]:
    return {
        "durable_name": durable,
        "ack_policy": "explicit",
        "ack_wait": 80 * 1_000_000_000,
        "max_deliver": 10,
        "max_ack_pending": -1,
        "deliver_policy": "all",
    }


async def _alloc_id(ctx: Context) -> int:
    # KV revisions are stream sequences: unique across instances without any coordination.
    return await ctx.store.dls.put_raw("seq", b"")


def _add_groups(groups: list[str]) -> Any:
    def fn(doc: dict[str, Any]) -> dict[str, Any]:
        for g in groups:
            if g not in doc["poisoned_cgs"]:
                doc["poisoned_cgs"].append(g)
        doc["updated_at"] = now_ms()
        return doc

    return fn


async def _store(ctx: Context, row: dict[str, Any], report: str | None = None) -> bool:
    """Insert or merge a DLS row (docs/protocol.md §9.4 merge key: station, seq, partition); True
    if new.

    A schema failure has no message sequence to merge on; ``report`` (which capture-stream
    message reported it) makes a redelivered report find the row it already stored.
    """
    dls = ctx.store.dls
    st = key(row["station"])
    if row["message_type"] == "schema":
        idx = f"i.{st}.schema.{report}" if report else None
        if idx is not None and await dls.get(idx) is not None:
            return False  # a redelivery of a report whose row is stored
        row["id"] = await _alloc_id(ctx)
        # Row first, index second: a crash in between can at worst repeat a row, never
        # lose one.
        await dls.put(f"m.{st}.{row['id']}", row)
        if idx is not None and await dls.create(idx, {"id": row["id"]}) is None:
            await dls.delete(f"m.{st}.{row['id']}")  # another instance stored it first
            return False
        return True
    part = row["partition_number"] if row["partition_number"] >= 0 else "l"
    idx = f"i.{st}.{part}.{row['message_seq']}"
    for _ in range(10):
        got = await dls.get(idx)
        if got is not None:
            merged = await dls.mutate(f"m.{st}.{got[0]['id']}", _add_groups(row["poisoned_cgs"]))
            if merged is not None:
                return False
            # Stale index of an already-acknowledged row. Compare-and-set: another instance
            # may have just replaced it with a live one, which must stay.
            await dls.delete(idx, got[1])
        row["id"] = await _alloc_id(ctx)
        await dls.put(f"m.{st}.{row['id']}", row)
        if await dls.create(idx, {"id": row["id"]}) is not None:
            return True
        # Another instance stored the same message first: merge into its row instead.
        await dls.delete(f"m.{st}.{row['id']}")
    return False


def _row(
    *,
    station: str,
    seq: int,
    partition: int,
    groups: list[str],
    mtype: str,
    error: str,
    producer: str,
    data: bytes,
    headers: dict[str, str],
    time_sent: str,
) -> dict[str, Any]:
    # time_sent is RFC 3339, as Go marshals the broker's time.Time.
    size = len(data) + sum(len(k) + len(v) for k, v in headers.items())
    return {
        "id": 0,
        "station": station,
        "message_seq": seq,
        "partition_number": partition,
        "poisoned_cgs": groups,
        "message_type": mtype,
        "validation_error": error,
        "producer_name": producer,
        "message_details": {
            "time_sent": time_sent,
            "size": size,
            "data": data.hex(),
            "headers": headers,
        },
        "updated_at": now_ms(),
    }


async def _forward(
    ctx: Context, source: dict[str, Any], data: bytes, headers: dict[str, str], kind: str
) -> None:
    """docs/protocol.md §9.6: also produce the DLS entry into the source's ``dls_station``.

    Quirks fixed: any partition can be picked (the real broker's ``Intn(len-1)`` never picks the
    last one), and a message without headers is fine. Stock ``Nats-*`` headers are dropped so
    that the original ``Nats-Msg-Id`` cannot make JetStream discard the copy as a duplicate.
    """
    target_name = source.get("dls_station") or ""
    if not target_name:
        return
    target = await ctx.station(target_name)
    if target is None:
        return
    intern = internal_name(target_name)
    parts: list[int] = target.get("partitions") or []
    subject = f"{intern}${random.choice(parts)}.final" if parts else f"{intern}.final"
    hdrs = {k: v for k, v in headers.items() if not k.lower().startswith("nats-")}
    hdrs["station"] = source["name"]
    hdrs["type"] = kind
    await ctx.js.publish(subject, data, headers=hdrs)


async def _has_group(ctx: Context, station: str, group: str) -> bool:
    rows = await ctx.store.consumers.scan(f"{key(station)}.{key(group)}.*")
    return any(r["type"] == "application" for _k, r in rows)


async def process_advisory(ctx: Context, payload: bytes, report: str | None = None) -> None:
    """docs/protocol.md §9.1 steps 1-7 for one ``MAX_DELIVERIES`` advisory."""
    try:
        adv = decode(payload, ADVISORY_SPEC, "JSConsumerDeliveryExceededAdvisory")
    except GoJSONError:
        return
    stream: str = adv["stream"]
    # Our own capture streams and the KV buckets are internal (the fork skips "$memphis*").
    if not stream or stream.startswith(("$memphis", "KV_")):
        return
    intern, sep, part = stream.rpartition("$")
    if not sep:
        intern, partition = stream, -1
    elif part.isdigit():
        partition = int(part)
    else:
        return
    ext = intern.replace("#", ".")
    station = await ctx.station(ext)
    if station is None or not station["dls_configuration"]["poison"]:
        return
    group = adv["consumer"].replace("#", ".")
    got = await ctx.api.get_msg(stream, adv["stream_seq"])
    if got is None:
        return
    data, headers, time_sent = got
    producer = headers.get("$memphis_producedBy", "unknown")
    if producer == PRODUCED_BY_DLS:
        return  # already resent from the DLS once (docs/protocol.md §9.1 step 5)
    if not await _has_group(ctx, ext, group):
        return
    row = _row(
        station=ext,
        seq=adv["stream_seq"],
        partition=partition,
        groups=[group],
        mtype="poison",
        error="",
        producer=producer,
        data=data,
        headers=headers,
        time_sent=time_sent,
    )
    if await _store(ctx, row):
        await _forward(ctx, station, data, headers, "unacked")


async def process_nacked(ctx: Context, payload: bytes, report: str | None = None) -> None:
    """docs/protocol.md §9.3: an explicit ``dead_letter(reason)`` reported by an SDK."""
    try:
        req = decode(payload, NACKED_SPEC, "NackedDlsMessage")
    except GoJSONError:
        return
    if req["partition"] == 0:
        return  # the real broker panics here (docs/protocol.md §9.3); SDKs always send 1 or more
    ext = req["station_name"].replace("#", ".")
    station = await ctx.station(ext)
    if station is None or not station["dls_configuration"]["poison"]:
        return
    stream = (
        f"{internal_name(ext)}${req['partition']}" if req["partition"] > 0 else internal_name(ext)
    )
    got = await ctx.api.get_msg(stream, req["seq"])
    if got is None:
        return
    data, headers, time_sent = got
    producer = headers.get("$memphis_producedBy", "unknown")
    row = _row(
        station=ext,
        seq=req["seq"],
        partition=req["partition"],
        groups=[req["cg_name"].lower()],
        mtype="poison",
        error=req["error"],
        producer=producer,
        data=data,
        headers=headers,
        time_sent=time_sent,
    )
    if await _store(ctx, row):
        await _forward(ctx, station, data, headers, "unacked")


async def process_schemaverse(ctx: Context, payload: bytes, report: str | None = None) -> None:
    """docs/protocol.md §9.2: a schema-validation failure reported by a producer.

    ``report`` identifies the capture-stream message (sequence and timestamp); a
    redelivered report then stores no second row. Poison reports need none: they merge on
    the message's own sequence.
    """
    try:
        req = decode(payload, SCHEMAVERSE_SPEC, "SchemaVerseDlsMessageSdk")
    except GoJSONError:
        return
    ext = req["station_name"].replace("#", ".")
    station = await ctx.station(ext)
    if station is None:
        return
    msg = req["message"]
    try:
        data = binascii.unhexlify(msg["data"])
    except (binascii.Error, ValueError):
        data = msg["data"].encode()
    raw_headers = msg["headers"] if isinstance(msg["headers"], dict) else {}
    headers = {str(k): str(v) for k, v in raw_headers.items()}
    row = _row(
        station=ext,
        seq=0,
        partition=req["partition_number"],
        groups=[],
        mtype="schema",
        error=req["validation_error"],
        producer=req["producer"]["name"],
        data=data,
        headers=headers,
        time_sent=datetime.now(UTC).isoformat(),
    )
    await _store(ctx, row, report)
    await _forward(ctx, station, data, headers, "failed_schema")


def _drop_group(group: str) -> Any:
    def fn(doc: dict[str, Any]) -> dict[str, Any] | None:
        if group in doc["poisoned_cgs"]:
            doc["poisoned_cgs"].remove(group)
        if not doc["poisoned_cgs"] and doc["message_type"] != "schema":
            return None  # last group acknowledged: the row goes (docs/protocol.md §3.2 pm_acks)
        return doc

    return fn


async def _remove_group(ctx: Context, k: str, row: dict[str, Any], group: str) -> None:
    dls = ctx.store.dls
    left = await dls.mutate(k, _drop_group(group))
    if left is None and row["message_type"] != "schema":
        st = key(row["station"])
        part = row["partition_number"] if row["partition_number"] >= 0 else "l"
        idx = f"i.{st}.{part}.{row['message_seq']}"
        got = await dls.get(idx)
        # Only the index that still points at the removed row, and only at the revision we
        # read: a new row for the same message (stored meanwhile) keeps its index.
        if got is not None and got[0].get("id") == row["id"]:
            await dls.delete(idx, got[1])


async def process_pm_ack(ctx: Context, payload: bytes) -> None:
    """``$memphis_pm_acks`` ``{id, cg_name}``: the group handled a resent poison message."""
    try:
        req = decode(payload, PM_ACK_SPEC, "PmAckMsg")
    except GoJSONError:
        return
    for k, row in await ctx.store.dls.scan(f"m.*.{req['id']}"):
        # SDKs send the group as given; the broker's group identity is lower-case (docs/protocol.md
        # §7.2 step 1).
        await _remove_group(ctx, k, row, req["cg_name"].lower())


async def remove_group_everywhere(ctx: Context, station: str, group: str) -> None:
    """docs/protocol.md §7.12 step 2: the group's last member is gone, so it no longer tracks
    poison messages."""
    for k, row in await ctx.store.dls.scan(f"m.{key(station)}.*"):
        if group in row["poisoned_cgs"]:
            await _remove_group(ctx, k, row, group)


async def list_dls(ctx: Context, station: str) -> list[dict[str, Any]]:
    """Every DLS row of ``station``, oldest first."""
    rows = [row for _k, row in await ctx.store.dls.scan(f"m.{key(station.lower())}.*")]
    return sorted(rows, key=lambda r: int(r["id"]))


async def resend(ctx: Context, station: str, ids: set[int] | None = None) -> int:
    """docs/protocol.md §9.5: republish poison rows to every poisoned group as core NATS messages.

    Sent to ``$memphis_dls_<st>.<cg>`` (what SDK consumers subscribe to) and the legacy
    ``$memphis_dls_<st>_<cg>``. Returns the number of (row, group) pairs sent.
    """
    intern = internal_name(station)
    sent = 0
    for row in await list_dls(ctx, station):
        if ids is not None and int(row["id"]) not in ids:
            continue
        details = row["message_details"]
        data = bytes.fromhex(details["data"])
        for group in row["poisoned_cgs"]:
            headers = {k: v for k, v in details["headers"].items() if k != "producedBy"}
            headers.update(
                {
                    "$memphis_pm_id": str(row["id"]),
                    "$memphis_pm_cg_name": group,
                    "$memphis_producedBy": PRODUCED_BY_DLS,
                }
            )
            cg = internal_name(group)
            # The current subject, and the old underscore form the real broker also publishes (8.8).
            for subject in (rq.dls_subject(intern, cg), f"$memphis_dls_{intern}_{cg}"):
                await ctx.nc.publish(subject, data, headers=headers)
            sent += 1
    await ctx.nc.flush()
    return sent


async def drop(ctx: Context, station: str, ids: set[int] | None = None) -> int:
    """Delete DLS rows of ``station`` (all, or those ``ids``) without resending them.

    The row goes as when its last poisoned group acknowledges it; the merge index left behind is
    then stale, and ``_store`` replaces a stale index when the message is reported again.
    Returns the number of rows deleted.
    """
    st = key(station.lower())
    dropped = 0
    for row in await list_dls(ctx, station):
        if ids is not None and int(row["id"]) not in ids:
            continue
        if await ctx.store.dls.delete(f"m.{st}.{row['id']}"):
            dropped += 1
    return dropped
