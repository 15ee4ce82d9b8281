"""What the console shows, read from where the control plane keeps it (docs/console.md).

Nothing here keeps state of its own or talks to nats-server in a way the control plane does
not: stations, producers, consumers, schemas and DLS rows come from the KV buckets
(``_store``), message counts, lag and unacked counts from the JetStream API (stream and
consumer info), and server health from the monitoring endpoint. That is why the console works
the same with ``--cluster`` and ``--nats-url``: every instance sees the same buckets and streams.

JetStream terms behind the figures (docs/console.md, "What the numbers mean"):

* lag of a group = the sum over the station's partitions of the group durable's
  ``num_pending`` (messages not yet delivered to the group);
* unacked = the sum of ``num_ack_pending`` (delivered, not yet acknowledged);
* messages in = the sum of the partition streams' ``last_seq`` (every message ever stored);
* messages out = the sum of the group durables' ``delivered.consumer_seq`` (every delivery,
  redeliveries included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage

from memphis_broker._context import Context
from memphis_broker._dls import list_dls
from memphis_broker._jsapi import JSApiError
from memphis_broker._schemas import schema_update_for
from memphis_broker._stations import stream_names
from memphis_broker._store import key
from memphis_core.memphis._errors import MemphisSchemaError
from memphis_core.memphis._names import internal_name
from memphis_core.memphis._schemas import Schema, parse_schema_init

__all__ = [
    "GroupState",
    "Payload",
    "ServerHealth",
    "StationState",
    "StoredMessage",
    "dls_rows",
    "payload_view",
    "read_health",
    "read_messages",
    "read_station",
    "read_stations",
    "schemas_with_stations",
    "station_schema",
]

_MONITOR_TIMEOUT_S: Final = 2.0
#: The largest "last N messages per partition" the browser reads (each is one STREAM.MSG.GET).
MAX_BROWSE: Final = 100


@dataclass
class GroupState:
    """One consumer group of a station, summed over its partitions."""

    name: str
    lag: int = 0
    unacked: int = 0
    delivered: int = 0
    redelivered: int = 0
    poison: int = 0
    max_ack_time_ms: int = 0
    max_deliveries: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)
    #: False when a partition's durable is missing (the group's last member left).
    durable: bool = True


@dataclass
class StationState:
    """A station's KV document plus its JetStream figures."""

    name: str
    doc: dict[str, Any]
    streams: list[str]
    messages: int = 0
    bytes: int = 0
    messages_in: int = 0
    dls: int = 0
    groups: dict[str, GroupState] = field(default_factory=dict)
    producers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def messages_out(self) -> int:
        return sum(g.delivered for g in self.groups.values())


@dataclass
class ServerHealth:
    """What one nats-server's monitoring endpoint says (None fields: not answered)."""

    url: str
    healthy: bool = False
    status: str = "unreachable"
    varz: dict[str, Any] = field(default_factory=dict)
    jsz: dict[str, Any] = field(default_factory=dict)

    @property
    def connections(self) -> int:
        return int(self.varz.get("connections", 0))

    @property
    def memory_bytes(self) -> int:
        return int(self.varz.get("mem", 0))

    @property
    def cpu_percent(self) -> float:
        return float(self.varz.get("cpu", 0.0))

    @property
    def sync(self) -> str:
        """The fsync mode in force: ``always``, or the interval (nats-server's default 2m)."""
        config = (self.varz.get("jetstream") or {}).get("config") or {}
        if config.get("sync_always"):
            return "always"
        interval = config.get("sync_interval")
        if isinstance(interval, int) and interval > 0:
            return _duration(interval)
        return "2m0s (nats-server default)" if self.varz else "unknown"


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    return f"{int(seconds // 60)}m{seconds % 60:g}s"


def _http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=_MONITOR_TIMEOUT_S) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as err:  # /healthz answers 503 with a JSON body
        with contextlib.suppress(ValueError, OSError):
            return int(err.code), json.loads(err.read())
        return int(err.code), {}


async def read_health(monitor_urls: list[str]) -> list[ServerHealth]:
    """``/healthz``, ``/varz`` and ``/jsz`` of every node (one thread each: urllib blocks)."""

    def one(url: str) -> ServerHealth:
        out = ServerHealth(url=url)
        try:
            code, doc = _http_json(f"{url}/healthz")
            out.healthy = code == 200 and doc.get("status") == "ok"
            out.status = "ok" if out.healthy else str(doc.get("error") or doc.get("status"))
            out.varz = _http_json(f"{url}/varz")[1]
            out.jsz = _http_json(f"{url}/jsz")[1]
        except (OSError, ValueError) as err:
            out.status = f"unreachable: {err}"
        return out

    return list(await asyncio.gather(*(asyncio.to_thread(one, u) for u in monitor_urls)))


async def _consumer_rows(ctx: Context, station: str) -> list[dict[str, Any]]:
    return [row for _k, row in await ctx.store.consumers.scan(f"{key(station)}.>")]


async def read_station(
    ctx: Context, doc: dict[str, Any], *, dls: bool = True, producers: bool = True
) -> StationState:
    """One station's figures: stream state per partition, group durables, and (unless turned
    off) the producers and the DLS rows."""
    name = doc["name"]
    st = StationState(name=name, doc=doc, streams=stream_names(doc))
    infos = await asyncio.gather(*(ctx.api.stream_info(s) for s in st.streams))
    for info in infos:
        if info is None:
            continue
        state = info.get("state") or {}
        st.messages += int(state.get("messages", 0))
        st.bytes += int(state.get("bytes", 0))
        st.messages_in += int(state.get("last_seq", 0))
    for row in await _consumer_rows(ctx, name):
        group = st.groups.setdefault(row["consumers_group"], GroupState(row["consumers_group"]))
        group.members.append(row)
        group.max_ack_time_ms = int(row.get("max_ack_time_ms", 0))
        group.max_deliveries = int(row.get("max_msg_deliveries", 0))
    for group in st.groups.values():
        durable = internal_name(group.name)
        cinfos = await asyncio.gather(*(ctx.api.consumer_info(s, durable) for s in st.streams))
        for cinfo in cinfos:
            if cinfo is None:
                group.durable = False
                continue
            group.lag += int(cinfo.get("num_pending", 0))
            group.unacked += int(cinfo.get("num_ack_pending", 0))
            group.redelivered += int(cinfo.get("num_redelivered", 0))
            group.delivered += int((cinfo.get("delivered") or {}).get("consumer_seq", 0))
            config = cinfo.get("config") or {}
            group.max_deliveries = int(config.get("max_deliver", group.max_deliveries))
            group.max_ack_time_ms = int(config.get("ack_wait", 0)) // 1_000_000 or (
                group.max_ack_time_ms
            )
    if producers:
        st.producers = [row for _k, row in await ctx.store.producers.scan(f"{key(name)}.*")]
    if dls:
        _count_dls(st, await dls_rows(ctx, name))
    return st


def _count_dls(st: StationState, rows: list[dict[str, Any]]) -> None:
    st.dls = len(rows)
    for row in rows:
        if row.get("message_type") != "poison":
            continue
        for g in row.get("poisoned_cgs") or []:
            if g in st.groups:
                st.groups[g].poison += 1


async def read_stations(
    ctx: Context, *, dls: bool = True, producers: bool = True
) -> list[StationState]:
    """Every station with its figures, by name (``dls``/``producers`` False: without them)."""
    docs = sorted((doc for _k, doc in await ctx.store.stations.scan()), key=lambda d: d["name"])
    by_station: dict[str, list[dict[str, Any]]] = {}
    if dls:
        for _k, row in await ctx.store.dls.scan("m.>"):
            by_station.setdefault(str(row.get("station")), []).append(row)
    out: list[StationState] = []
    for doc in docs:
        st = await read_station(ctx, doc, dls=False, producers=producers)
        _count_dls(st, by_station.get(st.name, []))
        out.append(st)
    return out


async def dls_rows(ctx: Context, station: str) -> list[dict[str, Any]]:
    """The station's DLS rows, oldest first (the same read as ``memphis-broker dls list``)."""
    return await list_dls(ctx, station)


@dataclass
class Payload:
    """How to show a payload: ``kind`` is ``json`` (deserialised by the station's JSON schema,
    or plain JSON), ``text`` (valid UTF-8) or ``hex`` (binary)."""

    kind: str
    text: str


def payload_view(data: bytes, schema: Schema | None = None) -> Payload:
    """Render bytes for a page: deserialised by the station's schema where it has one (with the
    SDKs' own deserializer, as ``Message.data_deserialized()``), else JSON, UTF-8 text or hex.

    A payload the schema cannot read is shown plainly, with the kind saying so.
    """
    if schema is not None:
        try:
            value = schema.deserialize(data)
        except MemphisSchemaError:
            plain = payload_view(data)
            return Payload(f"{plain.kind}, not valid for the schema", plain.text)
        if isinstance(value, ProtoMessage):
            value = json_format.MessageToDict(value, preserving_proto_field_name=True)
        if isinstance(value, str):
            return Payload(f"{schema.schema_type} schema", value)
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        return Payload(f"{schema.schema_type} schema", text)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Payload("hex", data.hex(" "))
    if any(not c.isprintable() and c not in "\r\n\t" for c in text):
        return Payload("hex", data.hex(" "))
    if text[:1] in "{[":
        with contextlib.suppress(ValueError):
            return Payload("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False))
    return Payload("text", text)


async def station_schema(ctx: Context, station: dict[str, Any]) -> Schema | None:
    """The station's schema as the SDKs receive it (the broker's ``schema_update``)."""
    update, _ = await schema_update_for(ctx, station)
    init = parse_schema_init(update)
    return None if init is None else Schema(init)


@dataclass
class StoredMessage:
    """One message of a partition stream, as the message browser shows it."""

    partition: int
    seq: int
    time: str
    headers: dict[str, str]
    payload: Payload
    size: int


async def read_messages(
    ctx: Context, st: StationState, last: int, schema: Schema | None = None
) -> list[StoredMessage]:
    """The last ``last`` messages of each partition (newest first), by ``STREAM.MSG.GET``."""
    last = max(1, min(last, MAX_BROWSE))
    parts: list[int] = list(st.doc.get("partitions") or [0])
    out: list[StoredMessage] = []
    for partition, stream in zip(parts, st.streams, strict=True):
        info = await ctx.api.stream_info(stream)
        if info is None:
            continue
        state = info.get("state") or {}
        first, top = int(state.get("first_seq", 0)), int(state.get("last_seq", 0))
        seq = top
        found = 0
        while seq >= max(first, 1) and found < last:
            try:
                got = await ctx.api.get_msg(stream, seq)
            except JSApiError:
                got = None
            if got is not None:
                data, headers, when = got
                out.append(
                    StoredMessage(
                        partition, seq, when, headers, payload_view(data, schema), len(data)
                    )
                )
                found += 1
            seq -= 1
    return out


async def schemas_with_stations(ctx: Context) -> list[tuple[dict[str, Any], list[str]]]:
    """Every schema (KV document, versions included) with the stations it is attached to."""
    schemas = sorted((doc for _k, doc in await ctx.store.schemas.scan()), key=lambda d: d["name"])
    stations = [doc for _k, doc in await ctx.store.stations.scan()]
    return [
        (s, sorted(d["name"] for d in stations if d.get("schema_name") == s["name"]))
        for s in schemas
    ]
