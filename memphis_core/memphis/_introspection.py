"""Introspection: what a consumer group, a station or the schemas look like on the broker (pure).

The Memphis client protocol has no "station info", "list stations" or "consumer lag" request
(the real broker serves those to its web console over HTTP, docs/introspection.md). Everything
here is asked of JetStream itself, through its request/reply API, on the connection the client
already has:

* a consumer group's lag: ``$JS.API.CONSUMER.INFO.<stream>.<durable>`` on every partition
  stream of the station (the group's durable exists on each, docs/protocol.md §7.3);
* a station: ``$JS.API.STREAM.INFO.<stream>`` per partition stream, ``<internal>$<p>``
  (``<internal>`` alone for a legacy station), and ``$JS.API.CONSUMER.NAMES.<stream>`` for its
  groups; every station: ``$JS.API.STREAM.LIST`` (paged), grouped by station;
* the schema and dead-letter settings of a station, and the schemas: these live only in the
  control plane's own store. ``memphis_broker`` keeps them in the JetStream key-value buckets
  ``memphis_stations`` and ``memphis_schemas`` (docs/introspection.md), which are read with
  ``$JS.API.STREAM.MSG.GET`` like any KV ``get``. They are reported as unknown (``None``)
  whenever that read gets no answer: a broker without those buckets (the real Memphis broker
  keeps them in PostgreSQL), and an application user of a password-mode ``memphis_broker``,
  whose NATS permissions refuse the KV API and the control plane's buckets
  (docs/introspection.md, "As an application user"). Such a user's ``STREAM.LIST`` is
  refused too, so the station list falls back to ``STREAM.NAMES`` and one ``STREAM.INFO`` per
  stream.

nats-server answers a publish that the user's permissions refuse with ``-ERR 'Permissions
Violation for Publish to "<subject>"'`` (one per refused message, the connection stays open)
and never delivers it, so no reply comes. Query requests are refusable (``Dispatcher.request``):
the dispatcher matches each such ``-ERR`` to the oldest query request still waiting on that
subject, which then ends at once with :class:`PermissionsViolationError` instead of waiting
out :data:`QUERY_TIMEOUT`.

A query is a generator (a *plan*): it yields a batch of requests, is sent the batch's replies
in the same order (each the reply's payload, or the error that ended that request), and returns
its typed result. :meth:`Queries.run` drives one on the client's request dispatcher, so the
frontends only send and wait; the parsers and plans are tested bytes in, results out.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, NamedTuple, TypeVar

from memphis_core.nats._errors import MemphisError, NoRespondersError, RemoteProtocolError
from memphis_core.nats._frames import Msg
from memphis_core.nats._headers import parse_header_block

from ._dispatch import Dispatcher, ReplyHandler
from ._errors import PermissionsViolationError, StationNotFoundError
from ._names import internal_name
from ._operation import Operation
from ._partitions import stream_name

__all__ = [
    "QUERY_TIMEOUT",
    "ConsumerInfo",
    "DlsSettings",
    "PartitionInfo",
    "PartitionLag",
    "Plan",
    "Queries",
    "Reply",
    "SchemaInfo",
    "StationInfo",
    "StreamSettings",
    "consumer_info_plan",
    "external_name",
    "kv_get_request",
    "schemas_plan",
    "station_info_plan",
    "stations_plan",
    "stream_config",
    "stream_settings",
]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds each JetStream API request of a query may take (the nats-py request default is 0.5 s;
#: a cluster electing a stream leader needs longer, and the CLI's old code used 10 s).
QUERY_TIMEOUT: Final = 10.0

#: One request of a plan: (subject, body). Sent with a reply inbox; the reply's payload goes back.
Request = tuple[str, bytes]
#: What a plan gets back for one request: the reply's payload, or the error that ended it
#: (timeout, no responders, permissions violation, connection lost).
Reply = bytes | MemphisError
#: A query: yields request batches, receives their replies (in order), returns T.
Plan = Generator[list[Request], list[Reply], T]

# The JetStream API error code a plan treats as an answer ("no such station") rather than a
# failure.
_STREAM_NOT_FOUND: Final = 10059
# memphis_broker's bucket names (docs/introspection.md); KV bucket B is stream KV_B, and key K is
# subject $KV.B.K.
_STATIONS_BUCKET: Final = "memphis_stations"
_SCHEMAS_BUCKET: Final = "memphis_schemas"
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_PARTITION: Final = re.compile(r"(?P<station>[^$]+)\$(?P<partition>[0-9]+)")
_NS: Final = 1_000_000_000


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class PartitionLag:
    """One partition's view of a consumer group (its durable on that partition's stream)."""

    #: The partition's stream, ``<internal station>$<partition>``.
    stream: str
    #: The partition number (None for a legacy single-stream station).
    partition: int | None
    #: Messages in the stream not yet delivered to the group: the group's lag. The field names
    #: are JetStream's (``CONSUMER.INFO``), as nats-py's ``ConsumerInfo`` has them.
    num_pending: int
    #: Delivered but neither acked nor terminated yet.
    num_ack_pending: int
    #: Delivered more than once and still unacked.
    num_redelivered: int
    #: Pull requests waiting at the server for messages.
    num_waiting: int
    #: The last stream sequence delivered to the group (JetStream ``delivered.stream_seq``).
    delivered_seq: int
    #: Every stream sequence up to this one is acked (``ack_floor.stream_seq``).
    ack_floor_seq: int


@dataclass(frozen=True)
class ConsumerInfo:
    """A consumer group's progress, summed over the station's partitions."""

    #: The station name as given.
    station: str
    #: The consumer group (``Consumer.consumer_group``).
    consumer_group: str
    #: Messages not yet delivered to the group (the lag), over all partitions.
    num_pending: int
    #: Delivered, neither acked nor terminated yet.
    num_ack_pending: int
    #: Delivered more than once and still unacked.
    num_redelivered: int
    #: Pull requests waiting at the server.
    num_waiting: int
    #: The per-partition detail, in partition order.
    partitions: tuple[PartitionLag, ...]


@dataclass(frozen=True)
class PartitionInfo:
    """One partition stream of a station."""

    #: The stream name.
    stream: str
    #: The partition number (None for a legacy single-stream station).
    partition: int | None
    #: Messages stored.
    messages: int
    #: Bytes stored.
    stored_bytes: int
    #: The first stored stream sequence.
    first_seq: int
    #: The last stream sequence written.
    last_seq: int


@dataclass(frozen=True)
class DlsSettings:
    """A station's dead-letter settings (``create_station``'s options)."""

    #: Poison messages (past ``max_msg_deliveries``) go to the dead-letter station.
    poison: bool
    #: Messages that failed schema validation go there too.
    schemaverse: bool
    #: The station that also receives the dead letters ("" = none).
    dls_station: str


@dataclass(frozen=True)
class StationInfo:
    """A station as the broker has it.

    Retention, storage, replicas and the idempotency window are read from the partition
    streams' JetStream configuration, so they are what the broker enforces.
    """

    #: The station name (lower case, as the broker stores it).
    name: str
    #: Each partition stream, in partition order.
    partitions: tuple[PartitionInfo, ...]
    #: ``"message_age_sec"``, ``"messages"``, ``"bytes"`` or ``"ack_based"``.
    retention_type: str
    #: Seconds, messages or bytes (0 for ``ack_based``).
    retention_value: int
    #: ``"file"`` or ``"memory"``.
    storage_type: str
    #: Stream replicas.
    replicas: int
    #: Seconds a ``msg_id`` is remembered.
    idempotency_window: float
    #: Messages stored, over all partitions.
    messages: int
    #: Bytes stored, over all partitions.
    stored_bytes: int
    #: The enforced schema's name, "" for none, None when the broker does not say (a broker without
    #: ``memphis_broker``'s state buckets).
    schema: str | None
    #: The dead-letter settings, None when the broker does not say.
    dls: DlsSettings | None
    #: The groups with a durable on the first partition.
    consumer_groups: tuple[str, ...]


@dataclass(frozen=True)
class SchemaInfo:
    """A schema in the broker's store."""

    #: The schema name.
    name: str
    #: ``"protobuf"``, ``"json"``, ``"graphql"`` or ``"avro"``.
    type: str
    #: How many versions it has.
    versions: int
    #: The version producers validate against (0: none active).
    active_version: int
    #: The user who created it.
    created_by: str


# ------------------------------------------------------------------------------ wire helpers


def external_name(internal: str) -> str:
    """A station's name from its internal one (``#`` back to ``.``; case is folded anyway)."""
    return internal.replace("#", ".")


def _kv_key(name: str) -> str:
    # memphis_broker's key encoding (docs/introspection.md): a name of [A-Za-z0-9_-.] has its
    # dots as "=", anything else is "/" + hex, so a name is always one subject token.
    if _PLAIN_KEY.fullmatch(name):
        return name.replace(".", "=")
    return "/" + name.encode().hex()


def kv_get_request(bucket: str, key: str) -> Request:
    """A KV ``get``: the last message on ``$KV.<bucket>.<key>`` of stream ``KV_<bucket>``."""
    body = json.dumps({"last_by_subj": f"$KV.{bucket}.{key}"}, separators=(",", ":"))
    return f"$JS.API.STREAM.MSG.GET.KV_{bucket}", body.encode()


def _doc(reply: Reply, what: str) -> dict[str, Any]:
    """The reply's JSON object; the request's own error is raised as it is."""
    if isinstance(reply, MemphisError):
        raise reply
    payload = reply
    try:
        doc = json.loads(payload)
    except ValueError:
        raise RemoteProtocolError(f"{what}: reply is not JSON: {payload[:80]!r}") from None
    if not isinstance(doc, dict):
        raise RemoteProtocolError(f"{what}: reply is not a JSON object: {payload[:80]!r}")
    return doc


def _api_error(doc: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(err_code, description)`` of a JetStream API error reply, None on success."""
    error = doc.get("error")
    if not error:
        return None
    if not isinstance(error, dict):
        return 0, str(error)
    return int(error.get("err_code") or 0), str(error.get("description") or "JetStream error")


def _ok(reply: Reply, what: str) -> dict[str, Any]:
    """The reply document, or MemphisError with JetStream's description."""
    doc = _doc(reply, what)
    error = _api_error(doc)
    if error is not None:
        raise MemphisError(f"memphis: {what}: {error[1]}")
    return doc


def _int(doc: Mapping[str, Any], field: str) -> int:
    value = doc.get(field) or 0
    if not isinstance(value, int):
        raise RemoteProtocolError(f"JetStream reply field {field!r} is not an integer: {value!r}")
    return value


def _unreadable(reply: Reply, what: str) -> bool:
    """The control plane's store cannot be read on this connection: the request was refused by
    the user's permissions, nobody answers it, or JetStream answered with an error (no such
    bucket or key, or an account without access)."""
    if isinstance(reply, (PermissionsViolationError, NoRespondersError)):
        return True
    return not isinstance(reply, MemphisError) and _api_error(_doc(reply, what)) is not None


def _kv_value(reply: Reply, what: str) -> dict[str, Any] | None:
    """The JSON document of a KV ``get`` reply; None when it cannot be read (:func:`_unreadable`)
    or the key is deleted."""
    if _unreadable(reply, what):
        return None
    doc = _doc(reply, what)
    message = doc.get("message")
    if not isinstance(message, dict):
        raise RemoteProtocolError(f"{what}: no message in {str(doc)[:80]}")
    try:
        headers = base64.b64decode(message.get("hdrs") or "")
        data = base64.b64decode(message.get("data") or "")
    except (binascii.Error, TypeError):
        raise RemoteProtocolError(f"{what}: bad base64 in {str(message)[:80]}") from None
    # A deleted key is a message with a KV-Operation header (DEL or PURGE) and no data.
    if headers and parse_header_block(headers)[2].get("KV-Operation") in ("DEL", "PURGE"):
        return None
    if not data:
        return None
    return _doc(data, what)


# ------------------------------------------------------------------------------ consumer info


def _lag(reply: Reply, stream: str, partition: int | None) -> PartitionLag:
    doc = _ok(reply, f"consumer info on {stream}")
    delivered = doc.get("delivered") or {}
    ack_floor = doc.get("ack_floor") or {}
    return PartitionLag(
        stream=stream,
        partition=partition,
        num_pending=_int(doc, "num_pending"),
        num_ack_pending=_int(doc, "num_ack_pending"),
        num_redelivered=_int(doc, "num_redelivered"),
        num_waiting=_int(doc, "num_waiting"),
        delivered_seq=_int(delivered, "stream_seq"),
        ack_floor_seq=_int(ack_floor, "stream_seq"),
    )


def consumer_info_plan(
    station: str, internal: str, partitions: Sequence[int], durable: str, group: str
) -> Plan[ConsumerInfo]:
    """One ``CONSUMER.INFO`` per partition, all at once; summed into a :class:`ConsumerInfo`.

    ``partitions`` empty means a legacy station (one stream, no ``$<p>`` suffix).

    Raises:
        MemphisError: JetStream's error (the group's durable or its stream is gone).
    """
    numbers: list[int | None] = list(partitions) or [None]
    streams = [stream_name(internal, p) for p in numbers]
    replies = yield [(f"$JS.API.CONSUMER.INFO.{s}.{durable}", b"") for s in streams]
    lags = tuple(_lag(r, s, p) for r, s, p in zip(replies, streams, numbers, strict=True))
    return ConsumerInfo(
        station=station,
        consumer_group=group,
        num_pending=sum(lag.num_pending for lag in lags),
        num_ack_pending=sum(lag.num_ack_pending for lag in lags),
        num_redelivered=sum(lag.num_redelivered for lag in lags),
        num_waiting=sum(lag.num_waiting for lag in lags),
        partitions=lags,
    )


# ------------------------------------------------------------------------------ stations


# Checked in this order: a station's stream has one limit set (docs/protocol.md §5.4), and a
# stream with a message or byte limit besides an age is reported by the count.
_RETENTION_FIELDS: Final = (
    ("max_msgs", "messages", 1),
    ("max_bytes", "bytes", 1),
    ("max_age", "message_age_sec", _NS),
)


class StreamSettings(NamedTuple):
    """The station options a partition stream's JetStream config shows (docs/protocol.md §5.5):
    what the broker enforces, whatever its own records say."""

    #: ``"message_age_sec"``, ``"messages"``, ``"bytes"`` or ``"ack_based"``.
    retention_type: str
    #: Seconds, messages or bytes (0 for ``ack_based``).
    retention_value: int
    #: ``"file"`` or ``"memory"``.
    storage_type: str
    #: Stream replicas.
    replicas: int
    #: Seconds a ``msg_id`` is remembered (the stream's ``duplicate_window``).
    idempotency_window: float


def _retention(config: Mapping[str, Any]) -> tuple[str, int]:
    # The inverse of how a station's retention becomes stream limits (docs/protocol.md §5.4):
    # ack_based is interest retention; otherwise the one limit set (messages, bytes or age).
    if config.get("retention") == "interest":
        return "ack_based", 0
    for field, kind, scale in _RETENTION_FIELDS:
        value = config.get(field) or 0
        if isinstance(value, int) and value > 0:
            return kind, value // scale
    return "message_age_sec", 0


def stream_settings(config: Mapping[str, Any]) -> StreamSettings:
    """The station options of a stream's ``config`` (a STREAM.INFO reply's)."""
    retention_type, retention_value = _retention(config)
    return StreamSettings(
        retention_type=retention_type,
        retention_value=retention_value,
        storage_type="memory" if config.get("storage") == "memory" else "file",
        replicas=int(config.get("num_replicas") or 1),
        idempotency_window=int(config.get("duplicate_window") or 0) / _NS,
    )


def station_of(stream: Mapping[str, Any]) -> tuple[str, int | None] | None:
    """``(internal station, partition)`` of a station's stream; None for any other stream.

    A station stream ``S`` has exactly the subjects ``S.>`` (docs/protocol.md §5.4); KV
    buckets, the DLS streams and other streams on the server do not.
    """
    config = stream.get("config") or {}
    name = str(config.get("name", ""))
    if not name or name.startswith(("$", "KV_")) or config.get("subjects") != [f"{name}.>"]:
        return None
    match = _PARTITION.fullmatch(name)
    if match is None:
        return name, None  # a legacy station: one stream without a partition suffix
    return match["station"], int(match["partition"])


def _partition(stream: Mapping[str, Any], partition: int | None) -> PartitionInfo:
    state = stream.get("state") or {}
    return PartitionInfo(
        stream=str(stream["config"]["name"]),
        partition=partition,
        messages=_int(state, "messages"),
        stored_bytes=_int(state, "bytes"),
        first_seq=_int(state, "first_seq"),
        last_seq=_int(state, "last_seq"),
    )


def _dls(record: Mapping[str, Any] | None) -> DlsSettings | None:
    if record is None:
        return None
    config = record.get("dls_configuration") or {}
    return DlsSettings(
        poison=bool(config.get("poison", True)),
        schemaverse=bool(config.get("schemaverse", True)),
        dls_station=str(record.get("dls_station") or ""),
    )


def _station(
    internal: str,
    streams: Sequence[tuple[int | None, Mapping[str, Any]]],
    record: Mapping[str, Any] | None,
    groups: Sequence[str],
) -> StationInfo:
    ordered = sorted(streams, key=lambda item: item[0] or 0)
    settings = stream_settings(ordered[0][1]["config"])
    partitions = tuple(_partition(stream, p) for p, stream in ordered)
    return StationInfo(
        name=external_name(internal),
        partitions=partitions,
        **settings._asdict(),
        messages=sum(p.messages for p in partitions),
        stored_bytes=sum(p.stored_bytes for p in partitions),
        schema=None if record is None else str(record.get("schema_name") or ""),
        dls=_dls(record),
        consumer_groups=tuple(sorted(external_name(g) for g in groups)),
    )


def _stream_info(reply: Reply, stream: str) -> dict[str, Any] | None:
    """A STREAM.INFO reply; None when the stream does not exist."""
    doc = _doc(reply, f"stream info on {stream}")
    error = _api_error(doc)
    if error is None:
        return doc
    if error[0] == _STREAM_NOT_FOUND:
        return None
    raise MemphisError(f"memphis: stream info on {stream}: {error[1]}")


def stream_config(reply: Reply) -> dict[str, Any] | None:
    """The ``config`` of a STREAM.INFO reply; None for no such stream, the request's error, an
    error reply or a reply of the wrong shape (for best-effort reads that never fail)."""
    try:
        info = _stream_info(reply, "")
    except MemphisError:
        return None
    config = None if info is None else info.get("config")
    return config if isinstance(config, dict) else None


def _record_request(internal: str) -> Request:
    # The record's key is the station's name as the broker stores it: lower case, with dots.
    return kv_get_request(_STATIONS_BUCKET, _kv_key(external_name(internal)))


def station_info_plan(name: str) -> Plan[StationInfo]:
    """A station's streams, its record (schema, DLS) and its consumer groups.

    First the record and the first partition (and a legacy stream) at once; then every other
    partition the record names at once, or, without a record, one by one until a partition is
    missing (partitions are numbered from 1 without gaps, docs/protocol.md §5.4).

    Raises:
        StationNotFoundError: no stream of the station exists.
        MemphisError: JetStream refused a request.
    """
    internal = internal_name(name)
    first, legacy = stream_name(internal, 1), stream_name(internal, None)
    replies = yield [
        _record_request(internal),
        (f"$JS.API.STREAM.INFO.{first}", b""),
        (f"$JS.API.STREAM.INFO.{legacy}", b""),
    ]
    record = _kv_value(replies[0], f"station record of {name}")
    streams: list[tuple[int | None, Mapping[str, Any]]] = []
    info = _stream_info(replies[1], first)
    if info is not None:
        streams.append((1, info))
        listed = (record or {}).get("partitions")
        numbers = [int(p) for p in listed if int(p) != 1] if isinstance(listed, list) else None
        if numbers:
            subjects = [stream_name(internal, p) for p in numbers]
            more = yield [(f"$JS.API.STREAM.INFO.{s}", b"") for s in subjects]
            for p, s, reply in zip(numbers, subjects, more, strict=True):
                found = _stream_info(reply, s)
                if found is not None:
                    streams.append((p, found))
        elif numbers is None:
            p = 2
            while True:
                s = stream_name(internal, p)
                (reply,) = yield [(f"$JS.API.STREAM.INFO.{s}", b"")]
                found = _stream_info(reply, s)
                if found is None:
                    break
                streams.append((p, found))
                p += 1
    else:
        info = _stream_info(replies[2], legacy)
        if info is not None and station_of(info) is not None:
            streams.append((None, info))
    if not streams:
        raise StationNotFoundError(f"memphis: station {name} does not exist")
    first_stream = str(streams[0][1]["config"]["name"])
    (names,) = yield [(f"$JS.API.CONSUMER.NAMES.{first_stream}", b'{"offset":0}')]
    groups = _ok(names, f"consumer names on {first_stream}").get("consumers") or []
    return _station(internal, streams, record, [str(g) for g in groups])


def _paged(subject: str, what: str) -> Generator[list[Request], list[Reply], list[Any]]:
    """Every entry of a paged JetStream list (``STREAM.LIST``, ``STREAM.NAMES``)."""
    found: list[Any] = []
    while True:
        (page,) = yield [(subject, json.dumps({"offset": len(found)}).encode())]
        doc = _ok(page, what)
        batch = doc.get("streams") or []
        found.extend(batch)
        if not batch or len(found) >= _int(doc, "total"):
            return found


def _streams() -> Generator[list[Request], list[Reply], list[dict[str, Any]]]:
    """Every stream's info: ``STREAM.LIST``; where the user may not list, ``STREAM.NAMES`` and
    one ``STREAM.INFO`` per stream that could be a station's (docs/introspection.md)."""
    try:
        streams: list[dict[str, Any]] = yield from _paged("$JS.API.STREAM.LIST", "stream list")
    except PermissionsViolationError:
        pass
    else:
        return streams
    names = yield from _paged("$JS.API.STREAM.NAMES", "stream names")
    # "$..." (the DLS capture streams) and "KV_..." never hold a station, and an application
    # user may not ask about them.
    candidates = sorted(str(n) for n in names if not str(n).startswith(("$", "KV_")))
    if not candidates:
        return []
    replies = yield [(f"$JS.API.STREAM.INFO.{name}", b"") for name in candidates]
    found: list[dict[str, Any]] = []
    for name, reply in zip(candidates, replies, strict=True):
        if isinstance(reply, PermissionsViolationError):
            continue  # a stream this user may not see is not one of its stations
        info = _stream_info(reply, name)
        if info is not None:  # deleted since the names were listed
            found.append(info)
    return found


def stations_plan() -> Plan[list[StationInfo]]:
    """Every station: the streams (see :func:`_streams`) grouped by station; then every
    station's record at once. Consumer groups are not listed (one more request per station);
    see :func:`station_info_plan`.

    Raises:
        MemphisError: JetStream refused a request.
    """
    by_station: dict[str, list[tuple[int | None, Mapping[str, Any]]]] = {}
    for stream in (yield from _streams()):
        station = station_of(stream)
        if station is not None:
            by_station.setdefault(station[0], []).append((station[1], stream))
    internals = sorted(by_station)
    if not internals:
        return []
    records = yield [_record_request(internal) for internal in internals]
    return [
        _station(internal, by_station[internal], _kv_value(reply, f"record of {internal}"), ())
        for internal, reply in zip(internals, records, strict=True)
    ]


# ------------------------------------------------------------------------------ schemas


def _schema(doc: Mapping[str, Any]) -> SchemaInfo:
    versions = doc.get("versions") or []
    active = [int(v.get("version_number", 0)) for v in versions if v.get("active")]
    return SchemaInfo(
        name=str(doc.get("name", "")),
        type=str(doc.get("type", "")),
        versions=len(versions),
        active_version=active[0] if active else 0,
        created_by=str(doc.get("created_by") or ""),
    )


def schemas_plan() -> Plan[list[SchemaInfo] | None]:
    """Every schema in ``memphis_broker``'s store, by name; None when the store cannot be read
    (a broker without it, or a user whose permissions refuse it: :func:`_unreadable`). The
    subjects of bucket ``memphis_schemas`` come from ``STREAM.INFO`` with ``subjects_filter``,
    then one KV ``get`` per key.

    Raises:
        RequestTimeoutError: JetStream did not answer in time.
        RemoteProtocolError: a reply of the wrong shape.
    """
    prefix = f"$KV.{_SCHEMAS_BUCKET}."
    body = json.dumps({"subjects_filter": prefix + ">"}).encode()
    (reply,) = yield [(f"$JS.API.STREAM.INFO.KV_{_SCHEMAS_BUCKET}", body)]
    what = f"stream info on KV_{_SCHEMAS_BUCKET}"
    if _unreadable(reply, what):
        return None
    info = _doc(reply, what)
    subjects = sorted((info.get("state") or {}).get("subjects") or {})
    if not subjects:
        return []
    keys = [s.removeprefix(prefix) for s in subjects]
    replies = yield [kv_get_request(_SCHEMAS_BUCKET, k) for k in keys]
    docs = [_kv_value(r, f"schema {k}") for k, r in zip(keys, replies, strict=True)]
    return sorted((_schema(d) for d in docs if d is not None), key=lambda s: s.name)


# ------------------------------------------------------------------------------ the driver


class _Batch(ReplyHandler):
    """The replies to one batch of a plan's requests; the last one advances the plan."""

    __slots__ = ("replies", "runner", "waiting")

    def __init__(self, runner: _Runner[Any], size: int) -> None:
        self.runner = runner
        self.replies: list[Reply] = [b""] * size
        self.waiting: dict[int, tuple[int, str]] = {}  # token -> (index in the batch, subject)

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        self._answer(token, b"" if msg is None else msg.payload, now)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        # Handed to the plan like a reply: some reads (the control plane's store) may fail
        # without failing the query; the plan raises the others.
        self._answer(token, error, now)

    def _answer(self, token: int, reply: Reply, now: float) -> None:
        # Each request is answered once (the dispatcher ends a refused one at once); a token
        # not waiting any more is ignored all the same, to be safe.
        found = self.waiting.pop(token, None)
        if found is None:
            return
        index, _subject = found
        self.replies[index] = reply
        if not self.waiting:
            self.runner.advance(self.replies, now)


#: Where a plan's outcome goes: its result or the error that ended it, and the time.
Done = Callable[[R | MemphisError, float], None]


class _Runner(Generic[R]):
    __slots__ = ("dispatcher", "done", "plan", "timeout", "what")

    def __init__(
        self, dispatcher: Dispatcher, what: str, plan: Plan[R], done: Done[R], timeout: float
    ) -> None:
        self.dispatcher = dispatcher
        self.what = what
        self.plan = plan
        self.done = done
        self.timeout = timeout

    def advance(self, replies: list[Reply] | None, now: float) -> None:
        try:
            batch = next(self.plan) if replies is None else self.plan.send(replies)
        except StopIteration as done:
            self.done(done.value, now)
            return
        except MemphisError as error:
            self.done(error, now)
            return
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # A reply of the wrong shape (a field missing, a string where a number belongs):
            # the peer's fault, reported as such rather than escaping into the I/O loop.
            self.done(
                RemoteProtocolError(f"{self.what}: unexpected JetStream reply: {error!r}"), now
            )
            return
        handler = _Batch(self, len(batch))
        for index, (subject, body) in enumerate(batch):
            token = self.dispatcher.request(
                subject, body, handler, now=now, timeout=self.timeout, replay=False, refusable=True
            )
            handler.waiting[token] = (index, subject)


class Queries:
    """Runs the plans of one client.

    Every query request is refusable (``Dispatcher.request``): a permissions ``-ERR`` on its
    subject answers it at once with :class:`PermissionsViolationError`, which a plan reads as
    "unknown" where the control plane's store is concerned.
    """

    __slots__ = ("_dispatcher",)

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def run(self, what: str, plan: Plan[T], now: float) -> Operation[T]:
        """Start ``plan``; the operation finishes with its result or error."""
        op: Operation[T] = Operation(what)

        def done(outcome: T | MemphisError, now: float) -> None:
            if isinstance(outcome, MemphisError):
                op.fail(outcome)
            else:
                op.finish(outcome)

        self.then(what, plan, done, now)
        return op

    def then(
        self, what: str, plan: Plan[T], done: Done[T], now: float, timeout: float = QUERY_TIMEOUT
    ) -> None:
        """Start ``plan``, each request waiting at most ``timeout`` seconds for its reply; call
        ``done(result or error, now)`` once when it ends. Requests are not replayed after a
        reconnect: one cut by it ends with its error at once."""
        _Runner(self._dispatcher, what, plan, done, timeout).advance(None, now)
