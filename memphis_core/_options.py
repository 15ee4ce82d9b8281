"""Validation and normalisation of user options (DESIGN section 5, memphis-client-protocol.md).

Each public ``*_options`` function takes the arguments of one public API call exactly as a user
passes them, checks every one, and returns a frozen dataclass in canonical form (durations in float
seconds, enums as members, consumer group resolved, headers as a tuple of pairs). Nothing is sent
before these checks pass, so every bad argument surfaces as ``LocalProtocolError`` (or the typed
``MemphisHeaderError``) at the call site, never as a broker reply or a crash later.

Where the Go SDK or the broker has an error text for a rule, that exact text is used (users match
on them); rules we add ourselves have texts in the same style.

Consumer and fetch options, and the small checkers shared by all builders, live in
:mod:`memphis_core._consumer_options` (split out to keep modules small); the public ones are
re-exported here, so this module stays the one to import from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from ._consumer_options import (
    MAX_BATCH_SIZE,
    ConsumerOptions,
    FetchOptions,
    check_bool,
    check_int,
    check_partition,
    check_seconds,
    check_str,
    checked_name,
    consumer_options,
    fetch_consumer_options,
    fetch_options,
)
from ._enums import RetentionType, StorageType, coerce_enum
from ._errors import LocalProtocolError, MemphisHeaderError
from ._names import internal_name

__all__ = [
    "MAX_BATCH_SIZE",
    "TLS",
    "ConnectOptions",
    "ConsumerOptions",
    "FetchOptions",
    "HeadersLike",
    "ProduceOptions",
    "ProducerOptions",
    "StationOptions",
    "SupportsHeaderItems",
    "connect_options",
    "consumer_options",
    "fetch_consumer_options",
    "fetch_options",
    "normalize_headers",
    "produce_options",
    "producer_options",
    "station_options",
]

# Broker limits mirrored client-side (memphis-client-protocol.md section 6.2).
_MAX_PARTITIONS: Final = 10_000
_MAX_IDEMPOTENCY_WINDOW: Final = 86_400.0  # 24 h in seconds
_MAX_PORT: Final = 65_535

_AUTH_ERROR: Final = (
    "you have to connect with one of the following methods: connection token / password"
)
_HEADER_PREFIX_ERROR: Final = "keys in headers should not start with $memphis"
# Same key rule as the wire layer (``_headers``): what nats.go's MIME reader accepts as a name.
_BAD_KEY: Final = re.compile(r"[\x00-\x20\x7f:]").search


class SupportsHeaderItems(Protocol):
    """Anything with ``items()`` yielding ``(name, value)`` pairs: a dict, or ``Headers``.

    Typed structurally so this module does not depend on ``_headers.Headers`` (written in
    parallel); a multi-valued ``Headers.items()`` yields one pair per value.
    """

    def items(self) -> Iterable[tuple[str, str]]: ...


HeadersLike = SupportsHeaderItems | Iterable[tuple[str, str]]


# --------------------------------------------------------------------------------------------
# connect (section 1)


@dataclass(frozen=True, slots=True)
class TLS:
    """Mutual-TLS files for :func:`connect` (section 1.5): all three, or none.

    The files are only named here; loading them is the frontend's job (the core does no I/O).
    """

    cert_file: str | os.PathLike[str] = ""
    key_file: str | os.PathLike[str] = ""
    ca_file: str | os.PathLike[str] = ""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Normalised :func:`connect` arguments. Secrets are kept out of ``repr``."""

    host: str
    username: str
    connection_token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    account_id: int = 1
    port: int = 6666
    reconnect: bool = True
    max_reconnect: int = 10
    reconnect_interval: float = 1.0
    timeout: float = 15.0
    tls: TLS | None = None

    @property
    def nats_user(self) -> str:
        """CONNECT ``user`` in password mode: ``<username>$<account_id>`` (section 1.2)."""
        return f"{self.username}${self.account_id}"

    @property
    def server(self) -> str:
        """``host:port`` as dialled (section 1.1: no scheme)."""
        return f"{self.host}:{self.port}"


def _tls(tls: object) -> TLS | None:
    if tls is None:
        return None
    if not isinstance(tls, TLS):
        raise LocalProtocolError(f"tls must be a TLS(cert_file, key_file, ca_file), not {tls!r}")
    cert, key, ca = (os.fspath(f) for f in (tls.cert_file, tls.key_file, tls.ca_file))
    if not (cert or key or ca):
        return None
    # Section 1.5: once any file is given all three are required, checked in this order.
    if not cert:
        raise LocalProtocolError("must provide a TLS cert file")
    if not key:
        raise LocalProtocolError("must provide a TLS key file")
    if not ca:
        raise LocalProtocolError("must provide a TLS ca file")
    return TLS(cert, key, ca)


def connect_options(
    host: str,
    username: str,
    *,
    connection_token: str | None = None,
    password: str | None = None,
    account_id: int = 1,
    port: int = 6666,
    reconnect: bool = True,
    max_reconnect: int = 10,
    reconnect_interval: float = 1.0,
    timeout: float = 15.0,
    tls: TLS | None = None,
) -> ConnectOptions:
    """Validate :func:`connect` arguments (DESIGN section 5, reference section 1).

    A leading ``http://`` or ``https://`` is stripped from ``host`` (only at the start, as the Go
    SDK's anchored regex does). ``max_reconnect=-1`` means "forever"; ``reconnect=False`` forces it
    to 0. Unlike the Go SDK we do not clamp values above 9 (DESIGN default is 10).

    Raises:
        LocalProtocolError: ``you have to connect with one of the following methods: connection
            token / password`` (neither or both given), ``must provide a TLS cert/key/ca file``,
            a bad port, duration, account id or empty host/username.
    """
    host = check_str(host, "host")
    for scheme in ("http://", "https://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
            break
    if not host:
        raise LocalProtocolError("host can not be empty")
    username = check_str(username, "username")
    if not username:
        raise LocalProtocolError("username can not be empty")
    # Section 1.2: "" counts as unset, and the same text covers "both" and "neither".
    token = check_str(connection_token, "connection_token") if connection_token is not None else ""
    secret = check_str(password, "password") if password is not None else ""
    if bool(token) == bool(secret):
        raise LocalProtocolError(_AUTH_ERROR)
    account_id = check_int(account_id, "account_id")
    if account_id < 0:
        raise LocalProtocolError("account_id can not be negative")
    port = check_int(port, "port")
    if not 1 <= port <= _MAX_PORT:
        raise LocalProtocolError(f"port must be between 1 and {_MAX_PORT}, not {port}")
    reconnect = check_bool(reconnect, "reconnect")
    max_reconnect = check_int(max_reconnect, "max_reconnect")
    if max_reconnect < -1:
        raise LocalProtocolError("max_reconnect must be -1 (forever) or more")
    return ConnectOptions(
        host=host,
        username=username,
        connection_token=token or None,
        password=secret or None,
        account_id=account_id,
        port=port,
        reconnect=reconnect,
        max_reconnect=max_reconnect if reconnect else 0,
        reconnect_interval=check_seconds(reconnect_interval, "reconnect_interval"),
        timeout=check_seconds(timeout, "timeout", positive=True),
        tls=_tls(tls),
    )


# --------------------------------------------------------------------------------------------
# stations (section 6)


@dataclass(frozen=True, slots=True)
class StationOptions:
    """Normalised :func:`create_station` arguments (wire mapping in reference section 6.1)."""

    name: str
    retention_type: RetentionType = RetentionType.MAX_MESSAGE_AGE_SECONDS
    retention_value: int = 3600
    storage_type: StorageType = StorageType.DISK
    replicas: int = 1
    idempotency_window: float = 120.0
    schema_name: str = ""
    send_poison_msg_to_dls: bool = True
    send_schema_failed_msg_to_dls: bool = True
    tiered_storage_enabled: bool = False
    partitions_number: int = 1
    dls_station: str = ""

    @property
    def internal_name(self) -> str:
        """The JetStream-safe station name (section 3)."""
        return internal_name(self.name)

    @property
    def idempotency_window_ms(self) -> int:
        """``idempotency_window_in_ms`` as sent (integer milliseconds, section 6.1)."""
        return round(self.idempotency_window * 1000)


def station_options(
    name: str,
    *,
    retention_type: RetentionType | str = RetentionType.MAX_MESSAGE_AGE_SECONDS,
    retention_value: int = 3600,
    storage_type: StorageType | str = StorageType.DISK,
    replicas: int = 1,
    idempotency_window: float = 120.0,
    schema_name: str = "",
    send_poison_msg_to_dls: bool = True,
    send_schema_failed_msg_to_dls: bool = True,
    tiered_storage_enabled: bool = False,
    partitions_number: int = 1,
    dls_station: str = "",
) -> StationOptions:
    """Validate :func:`create_station` arguments (DESIGN section 5, reference sections 6.1-6.2).

    ``partitions_number=0`` is read as 1, as the Go SDK does.

    Raises:
        LocalProtocolError: bad station name (broker texts, section 3), unknown retention or
            storage type (broker texts listing the allowed values), negative retention value,
            replicas < 1, idempotency window above 24 h (``idempotency window can not exceed 24
            hours``), partitions out of 1..10000 (broker text), wrong argument types.
    """
    name = checked_name(name, "Station", "station name")
    retention = coerce_enum(RetentionType, retention_type)
    value = check_int(retention_value, "retention_value")
    if value < 0:
        raise LocalProtocolError("retention value can not be negative")
    storage = coerce_enum(StorageType, storage_type)
    replicas = check_int(replicas, "replicas")
    if replicas < 1:
        raise LocalProtocolError("replicas must be 1 or more")
    window = check_seconds(idempotency_window, "idempotency_window")
    if window > _MAX_IDEMPOTENCY_WINDOW:
        raise LocalProtocolError("idempotency window can not exceed 24 hours")
    partitions = check_int(partitions_number, "partitions_number") or 1
    if not 1 <= partitions <= _MAX_PARTITIONS:
        # The broker's text, trailing ", " included (memphis-client-protocol.md section 6.2).
        raise LocalProtocolError(
            f"cannot create station with {partitions} partitions "
            f"(max:{_MAX_PARTITIONS} min:1): Station -  {name}, "
        )
    schema = check_str(schema_name, "schema_name")
    dls = check_str(dls_station, "dls_station")
    if dls:
        checked_name(dls, "Station", "dls_station")
    return StationOptions(
        name=name,
        retention_type=retention,
        retention_value=value,
        storage_type=storage,
        replicas=replicas,
        idempotency_window=window,
        schema_name=schema,
        send_poison_msg_to_dls=check_bool(send_poison_msg_to_dls, "send_poison_msg_to_dls"),
        send_schema_failed_msg_to_dls=check_bool(
            send_schema_failed_msg_to_dls, "send_schema_failed_msg_to_dls"
        ),
        tiered_storage_enabled=check_bool(tiered_storage_enabled, "tiered_storage_enabled"),
        partitions_number=partitions,
        dls_station=dls,
    )


# --------------------------------------------------------------------------------------------
# producers (section 7)


@dataclass(frozen=True, slots=True)
class ProducerOptions:
    """Normalised :func:`create_producer` arguments; ``name`` is lower-cased (section 7.1)."""

    station_name: str
    name: str

    @property
    def internal_station(self) -> str:
        """Internal station name, used for streams, subjects and the producer cache key."""
        return internal_name(self.station_name)


def producer_options(station_name: str, producer_name: str) -> ProducerOptions:
    """Validate :func:`create_producer` arguments.

    Raises:
        LocalProtocolError: a bad station or producer name (broker texts, section 3).
    """
    station = checked_name(station_name, "Station", "station name")
    name = checked_name(producer_name, "Producer", "producer name")
    # Section 7.1: the Go SDK lower-cases producer names (and only those) before sending.
    return ProducerOptions(station_name=station, name=name.lower())


@dataclass(frozen=True, slots=True)
class ProduceOptions:
    """Normalised :meth:`Producer.produce` arguments (section 7.3)."""

    ack_wait: float = 15.0
    headers: tuple[tuple[str, str], ...] = ()
    async_produce: bool = False
    msg_id: str | None = None
    partition_key: str | None = None
    partition_number: int | None = None


def _check_header_text(text: str, what: str) -> None:
    # A CR or LF would end the NATS/1.0 header line early and let a value inject headers.
    if "\r" in text or "\n" in text:
        raise MemphisHeaderError(f"{what} can not contain CR or LF")


def normalize_headers(headers: HeadersLike | None) -> tuple[tuple[str, str], ...]:
    """Turn user headers into ``(name, value)`` pairs, in the order given.

    Accepts a mapping (values may also be a list/tuple of values), a ``Headers`` object or an
    iterable of pairs. Keys keep their case (section 7.4: Go does not canonicalise).

    Raises:
        MemphisHeaderError: ``keys in headers should not start with $memphis`` (reserved for the
            SDK's own headers, section 7.3), an empty key, a non-``str`` key or value, a key with
            ``:``, whitespace or control characters, or CR/LF in a value.
    """
    if headers is None:
        return ()
    if isinstance(headers, (str, bytes, bytearray)):
        raise MemphisHeaderError("headers must be a mapping or Headers, not a string")
    items: Iterable[object] = headers.items() if hasattr(headers, "items") else headers
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise MemphisHeaderError(f"headers must be (name, value) pairs, not {item!r}")
        key, value = item
        values = value if isinstance(value, (list, tuple)) else (value,)
        if not isinstance(key, str) or not all(isinstance(v, str) for v in values):
            raise MemphisHeaderError("header names and values must be str")
        if not key:
            raise MemphisHeaderError("header name can not be empty")
        if key.startswith("$memphis"):
            raise MemphisHeaderError(_HEADER_PREFIX_ERROR)
        if _BAD_KEY(key) is not None:
            raise MemphisHeaderError(
                f"header name {key!r} can not contain ':', whitespace or control characters"
            )
        for v in values:
            _check_header_text(v, "header value")
            pairs.append((key, v))
    return tuple(pairs)


def produce_options(
    *,
    ack_wait: float = 15.0,
    headers: HeadersLike | None = None,
    async_produce: bool = False,
    msg_id: str | None = None,
    partition_key: str | None = None,
    partition_number: int | None = None,
) -> ProduceOptions:
    """Validate :meth:`Producer.produce` options (DESIGN section 5, reference section 7.3).

    Raises:
        MemphisHeaderError: see :func:`normalize_headers`.
        LocalProtocolError: ``msg id can not be empty``, ``Can not use both partition number and
            partition key``, ``Partition number is out of range`` (< 1), ``ack_wait`` not > 0.
    """
    if msg_id is not None:
        msg_id = check_str(msg_id, "msg_id")
        if not msg_id:
            raise LocalProtocolError("msg id can not be empty")
        _check_header_text(msg_id, "msg id")
    key, number = check_partition(
        partition_key, partition_number, "Can not use both partition number and partition key"
    )
    return ProduceOptions(
        ack_wait=check_seconds(ack_wait, "ack_wait", positive=True),
        headers=normalize_headers(headers),
        async_produce=check_bool(async_produce, "async_produce"),
        msg_id=msg_id,
        partition_key=key,
        partition_number=number,
    )
