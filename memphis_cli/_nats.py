"""What the Memphis client protocol cannot do: station listing/details and the DLS.

The SDK protocol has no "list stations", "station info" or "list dead letters" request (the
real broker serves those only to its web console, over HTTP), and ``memphis_sync`` exposes no
raw request. So:

* ``station list`` / ``station info`` / the existence check before ``consume`` ask JetStream
  itself (``$JS.API.STREAM.LIST``, ``STREAM.INFO``, ``CONSUMER.NAMES``) on a separate nats-py
  connection with the same credentials. Every station partition is a stream ``<intern>$<p>``
  with subjects ``<intern>$<p>.>`` (legacy: ``<intern>`` / ``<intern>.>``), where ``<intern>``
  is the name lower-cased with ``.`` as ``#``. This works against any Memphis-compatible
  broker, ours or the real one.
* ``dls`` reads the dead-letter rows that ``memphis_broker`` keeps in its KV buckets through the
  broker package's admin functions, so it needs ``memphis_broker`` installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import nats
import nats.errors

from ._connection import describe
from ._errors import CliError

__all__ = [
    "dls_list",
    "dls_resend",
    "external_name",
    "internal_name",
    "list_stations",
    "station_exists",
    "station_info",
]

T = TypeVar("T")

_PARTITION: Final = re.compile(r"(?P<station>[^$]+)\$(?P<partition>[0-9]+)")


def internal_name(name: str) -> str:
    """A station name as JetStream knows it: lower case, ``.`` replaced by ``#``."""
    return name.lower().replace(".", "#")


def external_name(intern: str) -> str:
    """The inverse of :func:`internal_name` (up to case, which Memphis folds anyway)."""
    return intern.replace("#", ".")


def _servers(settings: Mapping[str, Any]) -> list[str]:
    servers = []
    for raw in str(settings["host"]).split(","):
        host = raw.strip()
        for scheme in ("http://", "https://", "nats://", "tls://"):
            if host.startswith(scheme):
                host = host[len(scheme) :]
                break
        if ":" not in host:
            host = f"{host}:{settings['port']}"
        servers.append(f"nats://{host}")
    return servers


def _tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext | None:
    cert, key, ca = settings["tls_cert"], settings["tls_key"], settings["tls_ca"]
    if not (cert or key or ca):
        return None
    if not (cert and key and ca):
        raise CliError("must provide a TLS cert/key/ca file (--tls-cert, --tls-key, --tls-ca)")
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def _auth_attempts(settings: Mapping[str, Any]) -> list[dict[str, str]]:
    # The same rules as connect(): exactly one of token and password; with a password the user
    # is "<name>$<account>" first and the plain name second (Memphis's own fallback).
    token, password = settings["connection_token"] or "", settings["password"] or ""
    if bool(token) == bool(password):
        raise CliError(
            "you have to connect with one of the following methods: connection token / password"
        )
    if token:
        return [{"token": token}]
    user = settings["username"]
    return [
        {"user": f"{user}${settings['account_id']}", "password": password},
        {"user": user, "password": password},
    ]


async def _ignore(_error: Exception) -> None:
    # nats-py logs connection errors by default; the CLI reports the raised one, once.
    return None


async def _open(settings: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A nats-py connection and the auth options that it was accepted with."""
    options: dict[str, Any] = {
        # Without "::" the broker does not take this for an SDK connection to track.
        "name": f"memphis-cli-{uuid.uuid4().hex[:8]}",
        "allow_reconnect": False,
        "connect_timeout": settings["timeout"],
        "error_cb": _ignore,
        "tls": _tls_context(settings),
    }
    attempts = _auth_attempts(settings)
    for i, auth in enumerate(attempts):
        try:
            # Bounded here: nats-py 2.16 keeps retrying a closed port past its own
            # connect_timeout (about 2 minutes); the CLI promises a fast one-line failure.
            nc = await asyncio.wait_for(
                nats.connect(_servers(settings), **options, **auth),
                timeout=float(settings["timeout"]) + 1.0,
            )
            return nc, {**auth, "tls": options["tls"]}
        except TimeoutError:
            raise OSError(
                f"cannot connect to {', '.join(_servers(settings))}: no answer within "
                f"{settings['timeout']} s"
            ) from None
        except nats.errors.AuthorizationError:
            if i == len(attempts) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Keep library log lines off stderr while nats-py runs, so an error stays one line.

    asyncio warns "returning true from eof_received() has no effect when using ssl" whenever
    a nats-py TLS connection closes; nothing is wrong, and errors reach us as exceptions.
    """
    loggers = [logging.getLogger(name) for name in ("asyncio", "nats")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _run(settings: Mapping[str, Any], body: Callable[..., Awaitable[T]]) -> T:
    """Run ``body(nc, auth)`` on a fresh nats-py connection; each failure becomes a CliError."""

    async def go() -> T:
        try:
            nc, auth = await _open(settings)
        except (nats.errors.Error, OSError, ssl.SSLError) as exc:
            text = str(exc) or type(exc).__name__
            raise CliError(f"cannot connect to {describe(settings)}: {text}") from exc
        try:
            return await body(nc, auth)
        finally:
            await nc.close()

    try:
        with _quiet_loggers():
            return asyncio.run(go())
    except (nats.errors.Error, TimeoutError) as exc:
        raise CliError(f"JetStream request failed: {exc or type(exc).__name__}") from exc


async def _api(nc: Any, subject: str, body: object = None) -> dict[str, Any]:
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=10.0)
    doc: dict[str, Any] = json.loads(reply.data)
    return doc


def _api_error(doc: Mapping[str, Any]) -> tuple[int, str] | None:
    error = doc.get("error")
    if not error:
        return None
    return int(error.get("code", 0)), str(error.get("description", "JetStream error"))


def _station_of(stream: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(internal station name, partition)`` of a station stream, None for any other stream."""
    config = stream["config"]
    name = str(config["name"])
    if name.startswith(("$", "KV_")) or config.get("subjects") != [f"{name}.>"]:
        return None
    match = _PARTITION.fullmatch(name)
    if match is None:
        return name, 0  # a legacy (version 0) station: one stream, no partition suffix
    return match["station"], int(match["partition"])


_RETENTION_FIELDS: Final = (
    ("max_age", "message_age_sec", 1e-9),
    ("max_bytes", "bytes", 1),
    ("max_msgs", "messages", 1),
)


def _retention(config: Mapping[str, Any]) -> tuple[str, int]:
    # The inverse of how a station's retention becomes stream limits: ack_based is interest
    # retention; otherwise the one limit that is set (age, bytes or messages) says the type.
    if config.get("retention") == "interest":
        return "ack_based", 0
    for field, kind, scale in _RETENTION_FIELDS:
        value = int(config.get(field) or 0)
        if value > 0:
            return kind, round(value * scale)
    return "message_age_sec", 0


def _summary(intern: str, streams: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    streams = sorted(streams, key=lambda s: str(s["config"]["name"]))
    config = streams[0]["config"]
    retention_type, retention_value = _retention(config)
    return {
        "name": external_name(intern),
        "partitions": len(streams),
        "messages": sum(int(s["state"]["messages"]) for s in streams),
        "bytes": sum(int(s["state"]["bytes"]) for s in streams),
        "retention_type": retention_type,
        "retention_value": retention_value,
        "storage_type": "memory" if config.get("storage") == "memory" else "file",
        "replicas": int(config.get("num_replicas", 1)),
        "idempotency_window": int(config.get("duplicate_window") or 0) / 1e9,
    }


async def _all_streams(nc: Any) -> list[dict[str, Any]]:
    streams: list[dict[str, Any]] = []
    while True:
        page = await _api(nc, "$JS.API.STREAM.LIST", {"offset": len(streams)})
        if (error := _api_error(page)) is not None:
            raise CliError(f"JetStream stream list failed: {error[1]}")
        batch = page.get("streams") or []
        streams.extend(batch)
        if not batch or len(streams) >= int(page.get("total", 0)):
            return streams


def _group(streams: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    stations: dict[str, list[dict[str, Any]]] = {}
    for stream in streams:
        found = _station_of(stream)
        if found is not None:
            stations.setdefault(found[0], []).append(stream)
    return stations


def list_stations(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every station with its partition count, stored messages/bytes and retention, by name.

    Raises:
        CliError: JetStream unreachable or credentials refused.
    """

    async def body(nc: Any, _auth: dict[str, Any]) -> list[dict[str, Any]]:
        stations = _group(await _all_streams(nc))
        return [_summary(intern, streams) for intern, streams in sorted(stations.items())]

    return _run(settings, body)


async def _partition_streams(nc: Any, intern: str) -> list[dict[str, Any]]:
    """The station's partition streams, found by STREAM.INFO on ``<intern>$1``, ``$2``, ...

    One INFO per partition instead of a full list: a station's partitions are numbered from 1
    without gaps (that is how Memphis and memphis_broker create them).
    """
    streams = []
    partition = 1
    while True:
        info = await _api(nc, f"$JS.API.STREAM.INFO.{intern}${partition}")
        if _api_error(info) is not None:
            break
        streams.append(info)
        partition += 1
    if not streams:
        legacy = await _api(nc, f"$JS.API.STREAM.INFO.{intern}")
        if _api_error(legacy) is None and _station_of(legacy) is not None:
            streams.append(legacy)
    return streams


def station_exists(settings: Mapping[str, Any], name: str) -> bool:
    """Whether station ``name`` has its streams (without creating anything).

    Raises:
        CliError: JetStream unreachable or credentials refused.
    """

    async def body(nc: Any, _auth: dict[str, Any]) -> bool:
        intern = internal_name(name)
        info = await _api(nc, f"$JS.API.STREAM.INFO.{intern}$1")
        if _api_error(info) is None:
            return True
        return bool(await _partition_streams(nc, intern))

    return _run(settings, body)


def station_info(settings: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The :func:`list_stations` summary of one station plus its partitions and groups.

    ``partitions_detail`` has per partition: messages, bytes, first and last sequence;
    ``consumer_groups`` is the durable consumers of the first partition (one per group).

    Raises:
        CliError: the station does not exist, or JetStream is unreachable.
    """

    async def body(nc: Any, _auth: dict[str, Any]) -> dict[str, Any]:
        intern = internal_name(name)
        streams = await _partition_streams(nc, intern)
        if not streams:
            raise CliError(f"station {name} does not exist")
        info = _summary(intern, streams)
        info["partitions_detail"] = [
            {
                "stream": s["config"]["name"],
                "messages": int(s["state"]["messages"]),
                "bytes": int(s["state"]["bytes"]),
                "first_seq": int(s["state"]["first_seq"]),
                "last_seq": int(s["state"]["last_seq"]),
            }
            for s in sorted(streams, key=lambda s: str(s["config"]["name"]))
        ]
        first = str(info["partitions_detail"][0]["stream"])
        names = await _api(nc, f"$JS.API.CONSUMER.NAMES.{first}", {"offset": 0})
        info["consumer_groups"] = sorted(
            external_name(str(n)) for n in names.get("consumers") or []
        )
        info["fsync"] = await _fsync_mode(nc)
        return info

    return _run(settings, body)


async def _fsync_mode(nc: Any) -> str:
    """The broker's JetStream fsync mode (``$memphis_broker_info``, docs/broker.md,
    "Durability"); "unknown" from a broker that does not answer it (the real Memphis)."""
    try:
        doc = await _api(nc, "$memphis_broker_info")
    except Exception:
        return "unknown"
    return str(doc.get("fsync") or "unknown")


def _admin() -> tuple[Any, Any, Any]:
    """``memphis_broker``'s admin context and DLS functions, or a one-line CliError."""
    # Imported on use: memphis_broker is an optional extra, and only `memphis dls` needs it.
    # list_dls/resend are what `memphis-broker dls` runs; memphis_broker does not export them
    # from its top level (yet), hence the module path.
    try:
        admin_context = importlib.import_module("memphis_broker").admin_context
        dls = importlib.import_module("memphis_broker._dls")
    except ImportError:
        raise CliError(
            "memphis dls needs memphis_broker (pip install 'memphis-sansio[broker]'): "
            "the Memphis client protocol has no request for dead letters"
        ) from None
    return admin_context, dls.list_dls, dls.resend


def _admin_run(settings: Mapping[str, Any], action: Callable[[Any], Awaitable[T]]) -> T:
    admin_context, _list, _resend = _admin()

    async def body(_nc: Any, auth: dict[str, Any]) -> T:
        # admin_context opens a connection of its own (it owns its KV setup), with the auth
        # that _run's connection was accepted with.
        async with admin_context(_servers(settings), **auth) as ctx:
            return await action(ctx)

    return _run(settings, body)


def dls_list(settings: Mapping[str, Any], station: str) -> list[dict[str, Any]]:
    """The station's dead-letter rows, oldest first (``memphis_broker`` brokers only).

    Raises:
        CliError: memphis_broker not installed, or JetStream unreachable.
    """
    _ctx, list_dls, _resend = _admin()
    return _admin_run(settings, lambda ctx: list_dls(ctx, station))


def dls_resend(settings: Mapping[str, Any], station: str, ids: set[int] | None) -> int:
    """Resend the station's poison messages to their groups; returns the number sent.

    Raises:
        CliError: memphis_broker not installed, or JetStream unreachable.
    """
    _ctx, _list, resend = _admin()
    sent: int = _admin_run(settings, lambda ctx: resend(ctx, station, ids))
    return sent
