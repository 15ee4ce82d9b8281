"""The subcommands that talk the Memphis protocol through ``memphis_sync``."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import memphis_sync

from . import _nats
from ._connection import open_connection
from ._errors import USAGE, CliError
from ._output import print_table

__all__ = [
    "consume",
    "dls_list",
    "dls_resend",
    "parse_headers",
    "produce",
    "schema_attach",
    "schema_create",
    "schema_detach",
    "schema_list",
    "station_create",
    "station_destroy",
    "station_info",
    "station_list",
]

Settings = Mapping[str, Any]

#: Default producer name: Memphis registers every producer by name, so the CLI needs one.
DEFAULT_PRODUCER: Final = "memphis-cli"


def _json_line(doc: object) -> None:
    print(json.dumps(doc, separators=(",", ":"), sort_keys=False), flush=True)


# ---------------------------------------------------------------------------------- stations


def station_create(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis station create NAME [options]``: create a station, or say that it exists.

    An existing station is left unchanged (the Memphis rule); the library logs each option that
    differs from what its streams show.
    """
    with open_connection(settings) as conn:
        existed = _exists(conn, args.name)
        conn.create_station(
            args.name,
            retention_type=args.retention_type,
            retention_value=args.retention_value,
            storage_type=args.storage_type,
            replicas=args.replicas,
            idempotency_window=args.idempotency_window,
            schema_name=args.schema,
            partitions_number=args.partitions,
            dls_station=args.dls_station,
        )
    if existed:
        print(f"station {args.name} already exists: left unchanged")
    else:
        print(f"station {args.name} created")
    return 0


def _exists(conn: memphis_sync.Connection, name: str) -> bool:
    try:
        conn.station_info(name)
    except memphis_sync.StationNotFoundError:
        return False
    return True


def station_destroy(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis station destroy NAME``: the streams, consumers and dead letters go with it.

    A missing station is an error here (the protocol's destroy succeeds quietly), so that a
    mistyped name is noticed.
    """
    with open_connection(settings) as conn:
        if not _exists(conn, args.name):
            raise CliError(f"station {args.name} does not exist")
        conn.destroy_station(args.name)
    print(f"station {args.name} destroyed")
    return 0


def _station_doc(info: memphis_sync.StationInfo, *, detail: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": info.name,
        "partitions": len(info.partitions),
        "messages": info.messages,
        "bytes": info.stored_bytes,
        "retention_type": info.retention_type,
        "retention_value": info.retention_value,
        "storage_type": info.storage_type,
        "replicas": info.replicas,
        "idempotency_window": info.idempotency_window,
        "schema": info.schema,
        "dls": None if info.dls is None else dataclasses.asdict(info.dls),
    }
    if detail:
        doc["partitions_detail"] = [
            {
                "stream": p.stream,
                "messages": p.messages,
                "bytes": p.stored_bytes,
                "first_seq": p.first_seq,
                "last_seq": p.last_seq,
            }
            for p in info.partitions
        ]
        doc["consumer_groups"] = list(info.consumer_groups)
    return doc


# None in a StationInfo / from schemas(): the control plane's records could not be read, on a
# broker that keeps none a client can read, or as a user whose permissions refuse them.
_UNREADABLE: Final = "the broker keeps none a client can read, or this user may not read them"


def _schema_text(schema: str | None) -> str:
    if schema is None:
        return f"unknown ({_UNREADABLE})"
    return schema or "none"


def _dls_text(dls: memphis_sync.DlsSettings | None) -> str:
    if dls is None:
        return f"unknown ({_UNREADABLE})"
    on = {True: "on", False: "off"}
    station = dls.dls_station or "none"
    return f"poison {on[dls.poison]}, schema failures {on[dls.schemaverse]}, copied to {station}"


def station_list(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis station list [--json]``: every station, from JetStream's stream list."""
    with open_connection(settings) as conn:
        stations = conn.stations()
    if args.json:
        for station in stations:
            _json_line(_station_doc(station, detail=False))
        return 0
    print_table(
        f"{len(stations)} station(s)",
        ("station", "partitions", "messages", "bytes", "retention", "storage", "schema"),
        [
            (
                s.name,
                str(len(s.partitions)),
                f"{s.messages:,}",
                f"{s.stored_bytes:,}",
                f"{s.retention_type} {s.retention_value}",
                f"{s.storage_type} x{s.replicas}",
                "?" if s.schema is None else s.schema or "-",
            )
            for s in stations
        ],
        right=frozenset({"partitions", "messages", "bytes"}),
        no_wrap=frozenset({"station"}),
    )
    return 0


def station_info(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis station info NAME [--json]``: partitions, sequences, groups, retention,
    schema and dead-letter settings."""
    with open_connection(settings) as conn:
        try:
            info = conn.station_info(args.name)
        except memphis_sync.StationNotFoundError:
            raise CliError(f"station {args.name} does not exist") from None
    fsync = _nats.fsync_mode(settings)
    if args.json:
        _json_line({**_station_doc(info, detail=True), "fsync": fsync})
        return 0
    print(info.name)
    for label, value in (
        ("retention", f"{info.retention_type} {info.retention_value}"),
        ("storage", f"{info.storage_type}, {info.replicas} replica(s)"),
        ("idempotency window", f"{info.idempotency_window:g} s"),
        ("messages", f"{info.messages:,} ({info.stored_bytes:,} bytes)"),
        ("schema", _schema_text(info.schema)),
        ("dead letters", _dls_text(info.dls)),
        ("consumer groups", ", ".join(info.consumer_groups) or "none"),
        ("durability", fsync),
    ):
        print(f"  {label}: {value}")
    print_table(
        "partitions",
        ("stream", "messages", "bytes", "first seq", "last seq"),
        [
            (p.stream, f"{p.messages:,}", f"{p.stored_bytes:,}", str(p.first_seq), str(p.last_seq))
            for p in info.partitions
        ],
        right=frozenset({"messages", "bytes", "first seq", "last seq"}),
        no_wrap=frozenset({"stream"}),
    )
    return 0


# ---------------------------------------------------------------------------------- produce


def parse_headers(items: Iterable[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict (a value may contain ``=``).

    Raises:
        CliError: an item without ``=`` or with an empty key (exit code 2).
    """
    headers: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(
                f"bad --headers item {item!r}: expected KEY=VALUE "
                "(put messages before --headers, or after --)",
                USAGE,
            )
        headers[key.strip()] = value
    return headers


def _stdin_lines() -> Iterator[bytes]:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is not None:
        for raw in stream:
            yield raw.rstrip(b"\r\n")
        return
    for line in sys.stdin:  # a text stream without a buffer (tests, some embedders)
        yield line.rstrip("\r\n").encode()


def _messages(args: argparse.Namespace) -> Iterator[bytes]:
    source: Iterable[bytes] = (
        [m.encode() for m in args.messages] if args.messages else _stdin_lines()
    )
    for message in source:
        for _ in range(args.count):
            yield message


def produce(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis produce STATION [MESSAGE ...]``: messages from arguments, else stdin lines.

    One message is produced synchronously and its stream sequence printed; more are produced
    asynchronously and confirmed by one ``flush()`` at the end.
    """
    if args.count < 1:
        raise CliError(f"--count must be at least 1, got {args.count}", USAGE)
    headers = parse_headers(args.headers)
    options: dict[str, Any] = {
        "headers": headers or None,
        "msg_id": args.msg_id,
        "partition_key": args.partition_key,
    }
    if not args.messages and sys.stdin.isatty():
        print("reading messages from stdin, one per line; end with Ctrl-D", file=sys.stderr)
    messages = _messages(args)
    # Peek two: one message gets a synchronous produce (and its PubAck); more are pipelined.
    head = list(itertools.islice(messages, 2))
    started = time.monotonic()
    count = size = 0
    with open_connection(settings) as conn:
        producer = conn.create_producer(args.station, args.producer)
        if len(head) == 1:
            ack = producer.produce(head[0], **options)
            if ack is None:  # pragma: no cover - a synchronous produce returns its PubAck
                raise CliError("the broker sent no acknowledgement")
            note = " (duplicate, not stored again)" if ack.duplicate else ""
            print(f"produced 1 message to {args.station}: {ack.stream} seq {ack.sequence}{note}")
            return 0
        try:
            for message in itertools.chain(head, messages):
                producer.produce(message, async_produce=True, **options)
                count += 1
                size += len(message)
            producer.flush()
        except memphis_sync.MemphisError as exc:
            # Say how far it got: the messages before this one were sent (flush() reports
            # the first failed async produce, so "up to" is as precise as it can be).
            raise CliError(f"after {count} message(s) sent to {args.station}: {exc}") from exc
    elapsed = time.monotonic() - started
    print(
        f"produced {count} message(s), {size:,} bytes, to {args.station} in {elapsed:.3f} s",
        flush=True,
    )
    return 0


# ---------------------------------------------------------------------------------- consume


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _message_doc(msg: memphis_sync.Message) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sequence": msg.sequence_number,
        "partition": msg.partition,
        "headers": msg.headers,
    }
    try:
        doc["data"] = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        doc["data_base64"] = base64.b64encode(msg.data).decode("ascii")
    return doc


def _print_message(msg: memphis_sync.Message, as_json: bool) -> None:
    if as_json:
        _json_line(_message_doc(msg))
        return
    headers = " ".join(f"{k}={v}" for k, v in msg.headers.items())
    prefix = f"#{msg.sequence_number}" + (f" [{headers}]" if headers else "")
    print(f"{prefix} {_text(msg.data)}", flush=True)


#: Longest single pull: bounds how late an idle --timeout or Ctrl-C is noticed.
_MAX_PULL_WAIT: Final = 1.0
_BATCH: Final = 100


def consume(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis consume STATION --consumer NAME``: print messages until --count or --timeout.

    The station must exist: consuming would otherwise create it (Memphis auto-creates
    stations for consumers), which turns a typo into a new, silently empty station.
    """
    if args.count is not None and args.count < 1:
        raise CliError(f"--count must be at least 1, got {args.count}", USAGE)
    if args.idle_timeout is not None and args.idle_timeout <= 0:
        raise CliError(f"--timeout must be positive seconds, got {args.idle_timeout}", USAGE)
    wait = _MAX_PULL_WAIT if args.idle_timeout is None else min(args.idle_timeout, _MAX_PULL_WAIT)
    received = 0
    with open_connection(settings) as conn:
        if not _exists(conn, args.station):
            raise CliError(f"station {args.station} does not exist")
        consumer = conn.create_consumer(
            args.station,
            args.consumer,
            consumer_group=args.group or "",
            batch_size=_BATCH,
            batch_max_wait_time=wait,
        )
        idle_since = time.monotonic()
        while args.count is None or received < args.count:
            want = _BATCH if args.count is None else min(_BATCH, args.count - received)
            batch = consumer.fetch(want)
            for i, msg in enumerate(batch):
                try:
                    _print_message(msg, args.json)
                except BaseException:
                    # Ctrl-C, or the reader of a pipe left: nobody saw these, so hand them
                    # back for redelivery now rather than after the group's max_ack_time.
                    for unseen in batch[i:]:
                        unseen.nack()
                    raise
                if args.ack:
                    msg.ack()
            received += len(batch)
            now = time.monotonic()
            if batch:
                idle_since = now
            elif args.idle_timeout is not None and now - idle_since >= args.idle_timeout:
                break
    print(f"consumed {received} message(s) from {args.station}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------- schemas


def schema_create(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis schema create NAME --type T FILE`` (an identical schema counts as success)."""
    with open_connection(settings) as conn:
        conn.create_schema(args.name, args.type, args.file)
    print(f"schema {args.name} ({args.type}) created from {args.file}")
    return 0


def schema_list(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis schema list [--json]``: every schema with its type and versions."""
    with open_connection(settings) as conn:
        schemas = conn.schemas()
    if schemas is None:
        raise CliError(f"the schemas cannot be listed: {_UNREADABLE}")
    if args.json:
        for schema in schemas:
            _json_line(dataclasses.asdict(schema))
        return 0
    print_table(
        f"{len(schemas)} schema(s)",
        ("schema", "type", "versions", "active", "created by"),
        [
            (s.name, s.type, str(s.versions), str(s.active_version or "-"), s.created_by)
            for s in schemas
        ],
        right=frozenset({"versions", "active"}),
        no_wrap=frozenset({"schema"}),
    )
    return 0


def schema_attach(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis schema attach NAME --station S``: enforce the schema on the station."""
    with open_connection(settings) as conn:
        conn.enforce_schema(args.name, args.station)
    print(f"schema {args.name} enforced on station {args.station}")
    return 0


def schema_detach(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis schema detach --station S``."""
    with open_connection(settings) as conn:
        conn.detach_schema(args.station)
    print(f"schema detached from station {args.station}")
    return 0


# ---------------------------------------------------------------------------------- DLS


def _check_station(settings: Settings, name: str) -> None:
    """Fail fast, as every other command does, when the broker is unreachable (nats-py, which
    the DLS admin functions use, keeps retrying a closed port for many seconds), the
    credentials are refused or the station does not exist."""
    _nats.check_admin()
    with open_connection(settings) as conn:
        if not _exists(conn, name):
            raise CliError(f"station {name} does not exist")


def dls_list(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis dls list STATION [--json]``: dead-letter rows (memphis_broker only)."""
    _check_station(settings, args.station)
    rows = _nats.dls_list(settings, args.station)
    if args.json:
        for row in rows:
            _json_line(row)
        return 0
    table_rows = []
    for row in rows:
        details = row.get("message_details", {})
        data = _text(bytes.fromhex(details.get("data", "")))
        table_rows.append(
            (
                str(row["id"]),
                str(row.get("message_seq", "")),
                str(row.get("partition_number", "")),
                str(row.get("message_type", "")),
                ", ".join(row.get("poisoned_cgs") or []),
                str(row.get("producer_name", "")),
                str(row.get("validation_error", "")),
                data if len(data) <= 40 else data[:39] + "…",
            )
        )
    print_table(
        f"{len(rows)} dead letter(s) in {args.station}",
        ("id", "seq", "partition", "type", "groups", "producer", "error", "data"),
        table_rows,
        right=frozenset({"id", "seq", "partition"}),
    )
    return 0


def dls_resend(args: argparse.Namespace, settings: Settings) -> int:
    """``memphis dls resend STATION [--id N ...]``: redeliver poison messages to their groups.

    A resend is a core NATS publish to the group's DLS subject: only a consumer of the group
    that is connected at that moment receives it. For a group with no live consumer nothing is
    delivered, and the row stays in the dead-letter station; that is reported, not counted.
    """
    _check_station(settings, args.station)
    result = _nats.dls_resend(settings, args.station, set(args.id) if args.id else None)
    delivered = sum(n for group, n in result.by_group.items() if group in result.live)
    idle = sorted(group for group in result.by_group if group not in result.live)
    if not result.by_group:
        print(f"no poison message to resend in the dead-letter station of {args.station}")
        return 0
    if delivered:
        print(f"resent {delivered} message(s) from the dead-letter station of {args.station}")
    if idle:
        count = sum(result.by_group[g] for g in idle)
        print(
            f"not delivered: {count} message(s) of group(s) {', '.join(idle)}, which have no "
            "live consumer; the rows stay in the dead-letter station (start a consumer in the "
            "group, then resend)",
            file=sys.stderr,
        )
        return 1
    return 0
