"""The options of every public call, declared once; their validation and normalisation
(docs/protocol.md §1, §5-§7).

Each call's keyword options are declared once, as a ``TypedDict`` (``ConnectKeywords``,
``StationKeywords``, ``ConsumerKeywords``, ``ProduceKeywords``, ``FetchKeywords``): each field
carries its type and its documentation (the ``#:`` comment, which the API reference shows), and
the frontends take them as ``**options: Unpack[...]`` (PEP 692), so a type checker and an IDE see
every option with its exact type, and no frontend repeats the list. The defaults live beside each
declaration (``_*_DEFAULTS``), and one ``*_options`` function per call checks every option and
returns a frozen dataclass in canonical form (durations in float seconds, enums as members,
consumer group resolved, headers as a tuple of pairs). Nothing is sent before these checks pass,
so every bad argument surfaces as ``LocalProtocolError`` (or the typed ``MemphisHeaderError``) at
the call site, never as a broker reply or a crash later; a keyword that is not declared is a
``TypeError``, worded as Python words it for a function with explicit keyword parameters.

Where the Go SDK or the broker has an error text for a rule, that exact text is used (users match
on them); rules we add ourselves have texts in the same style.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypedDict, Unpack

from memphis_core.nats._errors import LocalProtocolError
from memphis_core.nats._headers import Headers
from memphis_core.nats._pool import parse_server

from ._checks import (
    check_bool,
    check_int,
    check_partition,
    check_seconds,
    check_str,
    checked_name,
)
from ._enums import RetentionType, StorageType, coerce_enum
from ._errors import MemphisHeaderError
from ._names import internal_name, is_user_header

__all__ = [
    "DEFAULT_ACK_WAIT",
    "MAX_BATCH_SIZE",
    "TLS",
    "ConnectKeywords",
    "ConnectOptions",
    "ConsumerKeywords",
    "ConsumerOptions",
    "FetchKeywords",
    "FetchMessagesKeywords",
    "FetchOptions",
    "HeadersLike",
    "ProduceKeywords",
    "ProduceOptions",
    "ProducerOptions",
    "StationKeywords",
    "StationOptions",
    "SupportsHeaderItems",
    "check_keywords",
    "connect_options",
    "consumer_options",
    "fetch_consumer_options",
    "fetch_messages_options",
    "fetch_options",
    "normalize_headers",
    "produce_options",
    "producer_options",
    "station_options",
]

# Broker limits mirrored client-side (docs/protocol.md §5.4).
# The real open-source broker prints this limit but does not enforce it (docs/protocol.md §13.2);
# checking it here gives the same answer against either broker.
_MAX_PARTITIONS: Final = 10_000
_MAX_IDEMPOTENCY_WINDOW: Final = 86_400.0  # 24 h in seconds
_MIN_IDEMPOTENCY_WINDOW: Final = 0.1  # the broker's floor (100 ms)
_MAX_PORT: Final = 65_535

_AUTH_ERROR: Final = (
    "you have to connect with one of the following methods: connection token / password"
)
# Consumers hide every ``$memphis*`` header (docs/protocol.md §7.14), so a user header with that
# prefix would vanish in transit; the Go SDK refuses it with this text (§6.5).
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


def check_keywords(call: str, options: Mapping[str, object], declared: frozenset[str]) -> None:
    """Refuse a keyword that ``call``'s declaration does not have.

    A function taking ``**options: Unpack[...]`` would otherwise accept any keyword at run time,
    where one with explicit keyword parameters raises; the text is Python's own.

    Raises:
        TypeError: ``<call>() got an unexpected keyword argument '<name>'``.
    """
    if not declared.issuperset(options):
        unknown = next(key for key in options if key not in declared)
        raise TypeError(f"{call}() got an unexpected keyword argument {unknown!r}")


def _keys(declaration: type) -> frozenset[str]:
    # Every key of a TypedDict, those of its bases included.
    return frozenset(declaration.__annotations__)


# --------------------------------------------------------------------------------------------
# connect (docs/protocol.md §1)


@dataclass(frozen=True, slots=True)
class TLS:
    """Mutual-TLS files for :func:`connect` (docs/protocol.md §1.5): all three, or none.

    The files are only named here; loading them is the frontend's job (the core does no I/O).
    """

    cert_file: str | os.PathLike[str] = ""
    key_file: str | os.PathLike[str] = ""
    ca_file: str | os.PathLike[str] = ""


class ConnectKeywords(TypedDict, total=False):
    """The keyword options of ``connect()`` (docs/protocol.md §1), besides its callbacks.

    ``connect(host, username, **options)``: ``host`` is one server, several separated by commas
    (``"h1:4222,h2:4222"``), or a list of them (docs/cluster-client.md). Each is
    ``[scheme://]host[:port]``: ``nats://`` and ``tls://`` are accepted (``tls://`` needs
    ``tls``), as is the Go SDK's leading ``http://`` or ``https://`` (stripped once, at the start
    only, as its anchored regex does); a missing port means ``port``. ``username`` is the Memphis
    user. Exactly one of ``connection_token`` and ``password`` is required.

    Reconnects are automatic: a lost server is tried last, another is dialled at once, one server
    again only after ``reconnect_interval`` seconds; once every server failed ``max_reconnect``
    attempts the connection closes. So an outage of about ``max_reconnect *
    reconnect_interval`` seconds (10 s with the defaults) is survived, however many servers.
    """

    #: Token authentication (default None; ``""`` counts as not given).
    connection_token: str | None
    #: Password authentication, as the NATS user ``<username>$<account_id>`` (default None).
    password: str | None
    #: The Memphis tenant for password authentication (default 1).
    account_id: int
    #: The port of servers given without one (default 6666).
    port: int
    #: Re-establish a lost connection (default True; False makes ``max_reconnect`` 0).
    reconnect: bool
    #: Failed attempts per server before the connection closes, as nats.go's ``MaxReconnect``
    #: (default 10; -1 = forever). Not clamped to 9 as the Go SDK does.
    max_reconnect: int
    #: Seconds before the same server is dialled again (default 1.0).
    reconnect_interval: float
    #: Seconds for each dial and handshake (default 15.0).
    timeout: float
    #: Client certificate, key and CA files for mutual TLS (default None).
    tls: TLS | None
    #: Use only the servers given, not those a cluster advertises (nats.go's name; default
    #: False).
    ignore_discovered_servers: bool


_CONNECT_KEYS: Final = _keys(ConnectKeywords)
#: What ``connect`` applies for each option left out (the ``memphis`` command shows them too).
CONNECT_DEFAULTS: Final[ConnectKeywords] = {
    "connection_token": None,
    "password": None,
    "account_id": 1,
    "port": 6666,
    "reconnect": True,
    "max_reconnect": 10,
    "reconnect_interval": 1.0,
    "timeout": 15.0,
    "tls": None,
    "ignore_discovered_servers": False,
}


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Normalised :func:`connect` arguments (see :class:`ConnectKeywords`). Secrets are kept out
    of ``repr``.

    ``servers`` lists every ``(host, port)`` given, in the order given (the session shuffles
    them); ``host``/``port`` are the first of them, kept for callers of the single-host form.
    Built without ``servers``, it is ``((host, port),)``.
    """

    host: str
    username: str
    connection_token: str | None = field(repr=False)
    password: str | None = field(repr=False)
    account_id: int
    port: int
    reconnect: bool
    max_reconnect: int
    reconnect_interval: float
    timeout: float
    tls: TLS | None
    servers: tuple[tuple[str, int], ...] = ()
    ignore_discovered_servers: bool = False

    def __post_init__(self) -> None:
        if not self.servers:
            # Frozen dataclass: ``object.__setattr__`` is the documented way to fill a derived field
            # in ``__post_init__``.
            object.__setattr__(self, "servers", ((self.host, self.port),))

    @property
    def nats_user(self) -> str:
        """CONNECT ``user`` in password mode: ``<username>$<account_id>`` (docs/protocol.md
        §1.2)."""
        return f"{self.username}${self.account_id}"

    @property
    def server(self) -> str:
        """``host:port`` of the first server (docs/protocol.md §1.1: no scheme)."""
        return f"{self.host}:{self.port}"


def _tls(tls: object) -> TLS | None:
    if tls is None:
        return None
    if not isinstance(tls, TLS):
        raise LocalProtocolError(f"tls must be a TLS(cert_file, key_file, ca_file), not {tls!r}")
    cert, key, ca = (os.fspath(f) for f in (tls.cert_file, tls.key_file, tls.ca_file))
    if not (cert or key or ca):
        return None
    # docs/protocol.md §1.5: once any file is given all three are required, checked in this order.
    if not cert:
        raise LocalProtocolError("must provide a TLS cert file")
    if not key:
        raise LocalProtocolError("must provide a TLS key file")
    if not ca:
        raise LocalProtocolError("must provide a TLS ca file")
    return TLS(cert, key, ca)


def _servers(host: object, port: int, tls: bool) -> tuple[tuple[str, int], ...]:
    """``host`` as given to ``connect()``: one host, ``"h1:p1,h2:p2"``, or a list of those."""
    items: list[object]
    if isinstance(host, str):
        # A comma-separated string is the nats.go convention for a server list, and keeps the
        # single-string form of the Go SDK working for clusters (docs/cluster-client.md).
        items = list(host.split(","))
    elif isinstance(host, Sequence) and not isinstance(host, (bytes, bytearray)):
        items = list(host)
        if not items:
            raise LocalProtocolError("host: the list of servers can not be empty")
    else:
        raise LocalProtocolError(f"host must be a str or a list of str, not {host!r}")
    servers: list[tuple[str, int]] = []
    for item in items:
        text = check_str(item, "host").strip()
        # The Go SDK's single-host form: a leading http:// or https:// is dropped, once.
        for scheme in ("http://", "https://"):
            if text.startswith(scheme):
                text = text[len(scheme) :]
                break
        if not text:
            raise LocalProtocolError("host can not be empty")
        server, scheme_given = parse_server(text, port)
        if scheme_given == "tls" and not tls:
            raise LocalProtocolError(
                f"server {item!r} asks for TLS: pass tls=TLS(cert_file, key_file, ca_file)"
            )
        # Duplicates dropped here too, so ``ConnectOptions.servers`` (which users can read) shows
        # what the pool will actually contain.
        if server not in servers:
            servers.append(server)
    return tuple(servers)


def connect_options(
    host: str | Sequence[str], username: str, **options: Unpack[ConnectKeywords]
) -> ConnectOptions:
    """Validate :func:`connect` arguments (docs/protocol.md §1; each option is documented in
    :class:`ConnectKeywords`).

    Raises:
        TypeError: an option :class:`ConnectKeywords` does not declare.
        LocalProtocolError: ``you have to connect with one of the following methods: connection
            token / password`` (neither or both given), ``must provide a TLS cert/key/ca file``,
            a bad port, duration, account id or empty host/username, an empty server list, a
            ``tls://`` server without ``tls=``.
    """
    check_keywords("connect", options, _CONNECT_KEYS)
    given: ConnectKeywords = {**CONNECT_DEFAULTS, **options}
    connection_token, password = given["connection_token"], given["password"]
    tls_files = _tls(given["tls"])
    port = check_int(given["port"], "port")
    if not 1 <= port <= _MAX_PORT:
        raise LocalProtocolError(f"port must be between 1 and {_MAX_PORT}, not {port}")
    servers = _servers(host, port, tls_files is not None)
    username = check_str(username, "username")
    if not username:
        raise LocalProtocolError("username can not be empty")
    # "" counts as unset (the Go SDK's rule). The Go text covers both mistakes; we say which.
    token = check_str(connection_token, "connection_token") if connection_token is not None else ""
    secret = check_str(password, "password") if password is not None else ""
    if token and secret:
        raise LocalProtocolError(
            _AUTH_ERROR + ": both connection_token and password were given, pass only one"
        )
    if not token and not secret:
        raise LocalProtocolError(_AUTH_ERROR + ": neither connection_token nor password was given")
    account_id = check_int(given["account_id"], "account_id")
    if account_id < 0:
        raise LocalProtocolError("account_id can not be negative")
    reconnect = check_bool(given["reconnect"], "reconnect")
    max_reconnect = check_int(given["max_reconnect"], "max_reconnect")
    if max_reconnect < -1:
        raise LocalProtocolError("max_reconnect must be -1 (forever) or more")
    return ConnectOptions(
        host=servers[0][0],
        username=username,
        connection_token=token or None,
        password=secret or None,
        account_id=account_id,
        port=servers[0][1],
        reconnect=reconnect,
        # Not clamped to 9 as the Go SDK does (docs/protocol.md §12.1 item 11): the documented value
        # is the one applied.
        max_reconnect=max_reconnect if reconnect else 0,
        reconnect_interval=check_seconds(given["reconnect_interval"], "reconnect_interval"),
        timeout=check_seconds(given["timeout"], "timeout", positive=True),
        tls=tls_files,
        servers=servers,
        ignore_discovered_servers=check_bool(
            given["ignore_discovered_servers"], "ignore_discovered_servers"
        ),
    )


# --------------------------------------------------------------------------------------------
# stations (docs/protocol.md §5)


class StationKeywords(TypedDict, total=False):
    """The keyword options of ``create_station(name, **options)`` (wire mapping in
    docs/protocol.md §5.3). Every enum option also takes its wire value as a plain string
    (``"messages"``)."""

    #: What ``retention_value`` limits (default ``RetentionType.MAX_MESSAGE_AGE_SECONDS``).
    retention_type: RetentionType | str
    #: Seconds, messages or bytes, by ``retention_type`` (default 3600; ignored for
    #: ``ack_based``; 0 lets the broker use one hour of message age).
    retention_value: int
    #: Where the messages are kept (default ``StorageType.DISK``, sent as ``"file"``; or
    #: ``StorageType.MEMORY``).
    storage_type: StorageType | str
    #: Stream replicas (default 1; the broker rounds 2 and 4 up to 3 and caps at 5).
    replicas: int
    #: Seconds during which a repeated ``msg_id`` is dropped (default 120.0; 0.1 to 24 hours).
    idempotency_window: float
    #: A schema to enforce from the start (default ``""``, none).
    schema_name: str
    #: Keep messages that ran out of deliveries in the dead-letter store (default True).
    send_poison_msg_to_dls: bool
    #: Report messages that failed the schema to the dead-letter store (default True).
    send_schema_failed_msg_to_dls: bool
    #: Accepted for compatibility; no effect on stock NATS (default False).
    tiered_storage_enabled: bool
    #: Streams behind the station, 1-10000 (default 1; 0 is read as 1).
    partitions_number: int
    #: A station that also receives a copy of every dead letter (default ``""``, none; created
    #: if missing).
    dls_station: str


_STATION_KEYS: Final = _keys(StationKeywords)
#: What ``create_station`` applies for each option left out (the ``memphis`` command too).
STATION_DEFAULTS: Final[StationKeywords] = {
    "retention_type": RetentionType.MAX_MESSAGE_AGE_SECONDS,
    "retention_value": 3600,
    "storage_type": StorageType.DISK,
    "replicas": 1,
    "idempotency_window": 120.0,
    "schema_name": "",
    "send_poison_msg_to_dls": True,
    "send_schema_failed_msg_to_dls": True,
    "tiered_storage_enabled": False,
    "partitions_number": 1,
    "dls_station": "",
}


@dataclass(frozen=True, slots=True)
class StationOptions:
    """Normalised :func:`create_station` arguments (see :class:`StationKeywords`)."""

    name: str
    retention_type: RetentionType
    retention_value: int
    storage_type: StorageType
    replicas: int
    idempotency_window: float
    schema_name: str
    send_poison_msg_to_dls: bool
    send_schema_failed_msg_to_dls: bool
    tiered_storage_enabled: bool
    partitions_number: int
    dls_station: str

    @property
    def internal_name(self) -> str:
        """The JetStream-safe station name (docs/protocol.md §5.2)."""
        return internal_name(self.name)

    @property
    def idempotency_window_ms(self) -> int:
        """``idempotency_window_in_ms`` as sent (integer milliseconds, docs/protocol.md §5.3)."""
        return round(self.idempotency_window * 1000)


def station_options(name: str, **options: Unpack[StationKeywords]) -> StationOptions:
    """Validate :func:`create_station` arguments (docs/protocol.md §5.3, §5.4; each option is
    documented in :class:`StationKeywords`).

    Raises:
        TypeError: an option :class:`StationKeywords` does not declare.
        LocalProtocolError: bad station name (broker texts, docs/protocol.md §5.1), unknown
            retention or storage type (broker texts listing the allowed values), negative
            retention value,
            replicas < 1, idempotency window above 24 h (``idempotency window can not exceed 24
            hours``), partitions out of 1..10000 (broker text), wrong argument types.
    """
    check_keywords("create_station", options, _STATION_KEYS)
    given: StationKeywords = {**STATION_DEFAULTS, **options}
    name = checked_name(name, "Station", "station name")
    retention = coerce_enum(RetentionType, given["retention_type"])
    value = check_int(given["retention_value"], "retention_value")
    if value < 0:
        raise LocalProtocolError("retention value can not be negative")
    storage = coerce_enum(StorageType, given["storage_type"])
    replicas = check_int(given["replicas"], "replicas")
    if replicas < 1:
        raise LocalProtocolError("replicas must be 1 or more")
    window = check_seconds(given["idempotency_window"], "idempotency_window")
    if window < _MIN_IDEMPOTENCY_WINDOW:
        # The broker reads 0 as its 120 s default and raises anything under 100 ms to 100 ms:
        # sending such a value would silently give a window other than the one asked for.
        raise LocalProtocolError(
            f"idempotency_window must be at least {_MIN_IDEMPOTENCY_WINDOW} s, not "
            f"{given['idempotency_window']!r} (the broker turns 0 into 120 s and raises smaller "
            "values)"
        )
    if window > _MAX_IDEMPOTENCY_WINDOW:
        raise LocalProtocolError("idempotency window can not exceed 24 hours")
    partitions = check_int(given["partitions_number"], "partitions_number") or 1
    if not 1 <= partitions <= _MAX_PARTITIONS:
        # The broker's text, trailing ", " included (docs/protocol.md §5.4).
        raise LocalProtocolError(
            f"cannot create station with {partitions} partitions "
            f"(max:{_MAX_PARTITIONS} min:1): Station -  {name}, "
        )
    # Not checked as a name here: the broker answers for the schema it is asked to enforce
    # (docs/protocol.md §5.4 step 6).
    schema = check_str(given["schema_name"], "schema_name")
    dls = check_str(given["dls_station"], "dls_station")
    # The DLS station is created by the broker if missing (docs/protocol.md §5.4 step 11), so a bad
    # name would only fail after the station itself was made.
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
        send_poison_msg_to_dls=check_bool(
            given["send_poison_msg_to_dls"], "send_poison_msg_to_dls"
        ),
        send_schema_failed_msg_to_dls=check_bool(
            given["send_schema_failed_msg_to_dls"], "send_schema_failed_msg_to_dls"
        ),
        tiered_storage_enabled=check_bool(
            given["tiered_storage_enabled"], "tiered_storage_enabled"
        ),
        partitions_number=partitions,
        dls_station=dls,
    )


# --------------------------------------------------------------------------------------------
# producers (docs/protocol.md §6)


@dataclass(frozen=True, slots=True)
class ProducerOptions:
    """Normalised :func:`create_producer` arguments; ``name`` is lower-cased (docs/protocol.md
    §6.1)."""

    station_name: str
    name: str

    @property
    def internal_station(self) -> str:
        """Internal station name, used for streams, subjects and the producer cache key."""
        return internal_name(self.station_name)


def producer_options(station_name: str, producer_name: str) -> ProducerOptions:
    """Validate :func:`create_producer` arguments.

    Raises:
        LocalProtocolError: a bad station or producer name (broker texts, docs/protocol.md §5.1).
    """
    station = checked_name(station_name, "Station", "station name")
    name = checked_name(producer_name, "Producer", "producer name")
    # docs/protocol.md §6.1: the Go SDK lower-cases producer names (and only those) before sending.
    return ProducerOptions(station_name=station, name=name.lower())


#: Seconds a produce waits for its PubAck by default (docs/protocol.md §6.3).
DEFAULT_ACK_WAIT: Final = 15.0


class ProduceKeywords(TypedDict, total=False):
    """The keyword options of ``produce(message, *, async_produce=False, **options)``
    (docs/protocol.md §6.3), besides ``async_produce``, which decides the return type."""

    #: Seconds to wait for the broker's acknowledgement (default ``DEFAULT_ACK_WAIT``, 15.0).
    ack_wait: float
    #: User headers, a mapping or ``Headers`` (default none). Keys may not start with
    #: ``$memphis``; ``msg-id`` and ``Nats-Msg-Id`` are written from ``msg_id``.
    headers: Mapping[str, str] | Headers | None
    #: Idempotency key; a second message with the same id within the station's idempotency
    #: window is dropped (default none). Without a partition key or number, the id chooses the
    #: partition (hashed like a key), so a retry reaches the same partition's stream, where
    #: JetStream de-duplicates; the official SDKs send it round robin, where it would be stored
    #: once per partition.
    msg_id: str | None
    #: Choose the partition by hashing this key, so equal keys keep their order (by default the
    #: ``msg_id``'s partition, else round robin).
    partition_key: str | None
    #: Produce to this 1-based partition (by default chosen as for ``partition_key``).
    partition_number: int | None


_PRODUCE_KEYS: Final = _keys(ProduceKeywords)


@dataclass(frozen=True, slots=True)
class ProduceOptions:
    """Normalised :meth:`Producer.produce` arguments (see :class:`ProduceKeywords`)."""

    ack_wait: float = DEFAULT_ACK_WAIT
    headers: tuple[tuple[str, str], ...] = ()
    async_produce: bool = False
    msg_id: str | None = None
    partition_key: str | None = None
    partition_number: int | None = None


_PRODUCE_SYNC: Final = ProduceOptions()
_PRODUCE_ASYNC: Final = ProduceOptions(async_produce=True)


def _check_header_text(text: str, what: str) -> None:
    # A CR or LF would end the NATS/1.0 header line early and let a value inject headers.
    if "\r" in text or "\n" in text:
        raise MemphisHeaderError(f"{what} can not contain CR or LF")


def normalize_headers(headers: HeadersLike | None) -> tuple[tuple[str, str], ...]:
    """Turn user headers into ``(name, value)`` pairs, in the order given.

    Accepts a mapping (values may also be a list/tuple of values), a ``Headers`` object or an
    iterable of pairs. Keys keep their case (docs/protocol.md §6.5: Go does not canonicalise).

    Raises:
        MemphisHeaderError: ``keys in headers should not start with $memphis`` (reserved for the
            SDK's own headers, docs/protocol.md §6.5), an empty key, a non-``str`` key or value, a
            key with ``:``, whitespace or control characters, or CR/LF in a value.
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
        # A list value means one header line per item: NATS headers are multi-valued, and a consumer
        # sees the first (docs/protocol.md §7.14).
        values = value if isinstance(value, (list, tuple)) else (value,)
        if not isinstance(key, str) or not all(isinstance(v, str) for v in values):
            raise MemphisHeaderError("header names and values must be str")
        if not key:
            raise MemphisHeaderError("header name can not be empty")
        if key.startswith("$memphis"):
            raise MemphisHeaderError(_HEADER_PREFIX_ERROR)
        # ``msg-id`` and ``Nats-Msg-Id`` are written by the SDK from ``msg_id`` (§6.5); a second
        # copy from the user could disagree with it and break deduplication on one of the two
        # brokers.
        if not is_user_header(key):
            raise MemphisHeaderError(
                f"header {key!r} is the idempotency key: pass msg_id=... instead"
            )
        if _BAD_KEY(key) is not None:
            raise MemphisHeaderError(
                f"header name {key!r} can not contain ':', whitespace or control characters"
            )
        for v in values:
            _check_header_text(v, "header value")
            pairs.append((key, v))
    return tuple(pairs)


def produce_options(
    *, async_produce: bool = False, **options: Unpack[ProduceKeywords]
) -> ProduceOptions:
    """Validate :meth:`Producer.produce` options (docs/protocol.md §6.3; each is documented in
    :class:`ProduceKeywords`).

    Raises:
        TypeError: an option :class:`ProduceKeywords` does not declare.
        MemphisHeaderError: see :func:`normalize_headers`.
        LocalProtocolError: ``msg id can not be empty``, ``Can not use both partition number and
            partition key``, ``Partition number is out of range`` (< 1), ``ack_wait`` not > 0.
    """
    if not options:
        # The most common call: nothing to check but ``async_produce``, and the answer is one of
        # two values (frozen, so shared).
        if async_produce is False:
            return _PRODUCE_SYNC
        if async_produce is True:
            return _PRODUCE_ASYNC
    elif not _PRODUCE_KEYS.issuperset(options):
        check_keywords("produce", options, _PRODUCE_KEYS)
    ack_wait = options.get("ack_wait", DEFAULT_ACK_WAIT)
    headers = options.get("headers")
    msg_id = options.get("msg_id")
    partition_key = options.get("partition_key")
    partition_number = options.get("partition_number")
    if headers is None and msg_id is None and partition_key is None and partition_number is None:
        # The common call carries none of the optional parts: only the two values that every call
        # has are checked, whatever they are.
        return ProduceOptions(
            ack_wait=check_seconds(ack_wait, "ack_wait", positive=True),
            async_produce=check_bool(async_produce, "async_produce"),
        )
    if msg_id is not None:
        # The id goes into two header lines (docs/protocol.md §6.5): the same CR/LF rule as for
        # header values applies.
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


MAX_BATCH_SIZE: Final = 5000
# Broker limit mirrored client-side (docs/protocol.md §7.3).
# ``max_deliver`` outside 1-10 is silently changed to 10 by the broker (docs/protocol.md §7.3);
# refusing it keeps the consumer's behaviour the one the user asked for.
_MAX_DELIVERIES: Final = 10
_BATCH_SIZE_ERROR: Final = "Batch size can not be greater than 5000 or less than 1"


def _batch_size(value: object) -> int:
    size = check_int(value, "batch_size")
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise LocalProtocolError(_BATCH_SIZE_ERROR)
    return size


# --------------------------------------------------------------------------------------------
# consumers (docs/protocol.md §7)


class ConsumerKeywords(TypedDict, total=False):
    """The keyword options of ``create_consumer(station_name, consumer_name, **options)``
    (docs/protocol.md §7.1); ``fetch_messages`` takes them too, with other defaults (see
    :class:`FetchMessagesKeywords`)."""

    #: The group to join (default ``""``, the consumer's own name as given). The members of
    #: one group share its messages: each message goes to one member.
    consumer_group: str
    #: Seconds ``consume()`` waits after a pull that ended short, the station drained
    #: (default 1.0).
    pull_interval: float
    #: Messages per pull for ``consume()`` and iteration, 1-5000 (default 10).
    batch_size: int
    #: Seconds one pull waits for a full batch (default 5.0; at least 0.001). ``fetch()``
    #: returns when it ends; ``consume()`` and iteration hand messages over as they arrive.
    batch_max_wait_time: float
    #: Seconds before an unacknowledged message is delivered again (default 30.0).
    max_ack_time: float
    #: Deliveries before a message counts as poison and goes to the dead-letter store, 1-10
    #: (default 10; the broker would silently turn other values into 10).
    max_msg_deliveries: int
    #: First stream sequence for a new group (default 1).
    start_consume_from_seq: int
    #: Start a new group this many messages before the end (default -1, off). Can not be
    #: combined with ``start_consume_from_seq`` > 1.
    last_messages: int


_CONSUMER_KEYS: Final = _keys(ConsumerKeywords)
_CONSUMER_DEFAULTS: Final[ConsumerKeywords] = {
    "consumer_group": "",
    "pull_interval": 1.0,
    "batch_size": 10,
    "batch_max_wait_time": 5.0,
    "max_ack_time": 30.0,
    "max_msg_deliveries": 10,
    "start_consume_from_seq": 1,
    "last_messages": -1,
}
# ``fetch_messages``: the Go SDK's ``FetchMessages`` defaults (docs/protocol.md §7.13).
_FETCH_MESSAGES_DEFAULTS: Final[ConsumerKeywords] = {
    **_CONSUMER_DEFAULTS,
    "batch_max_wait_time": 0.1,
    "max_ack_time": 10.0,
    "max_msg_deliveries": 2,
}


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Normalised consumer creation arguments (see :class:`ConsumerKeywords`);
    ``consumer_group`` is never empty."""

    station_name: str
    name: str
    consumer_group: str
    pull_interval: float
    batch_size: int
    batch_max_wait_time: float
    max_ack_time: float
    max_msg_deliveries: int
    start_consume_from_seq: int
    last_messages: int

    @property
    def internal_station(self) -> str:
        """Internal station name (docs/protocol.md §5.2)."""
        return internal_name(self.station_name)

    @property
    def internal_group(self) -> str:
        """The durable name: the consumer group, lower-cased with ``.`` → ``#`` (docs/protocol.md
        §7.3)."""
        return internal_name(self.consumer_group)

    @property
    def max_ack_time_ms(self) -> int:
        """``max_ack_time_ms`` as sent (integer milliseconds, docs/protocol.md §7.1)."""
        return round(self.max_ack_time * 1000)


def _consumer(
    station_name: object, name: object, given: ConsumerKeywords, *, min_wait: float
) -> ConsumerOptions:
    station = checked_name(station_name, "Station", "station name")
    consumer = checked_name(name, "Consumer", "consumer name")
    group = check_str(given["consumer_group"], "consumer_group")
    # docs/protocol.md §7.1: an empty group means "the consumer name as given" (original case).
    group = checked_name(group, "Consumer", "consumer_group") if group else consumer
    deliveries = check_int(given["max_msg_deliveries"], "max_msg_deliveries")
    if not 1 <= deliveries <= _MAX_DELIVERIES:
        # The broker silently turns <= 0 or > 10 into 10 (docs/protocol.md §7.3); say so up
        # front instead.
        raise LocalProtocolError(
            f"max_msg_deliveries must be between 1 and {_MAX_DELIVERIES}, not {deliveries}"
        )
    start = check_int(given["start_consume_from_seq"], "start_consume_from_seq")
    if start < 1:
        raise LocalProtocolError("startConsumeFromSequence has to be a positive number")
    last = check_int(given["last_messages"], "last_messages")
    if last < -1:
        raise LocalProtocolError("min value for LastMessages is -1")
    if start > 1 and last > -1:
        raise LocalProtocolError(
            "Consumer creation options can't contain both startConsumeFromSequence and lastMessages"
        )
    # docs/protocol.md §7.1, §7.13: short waits are raised to the minimum, not refused (Go
    # behaviour).
    wait = max(check_seconds(given["batch_max_wait_time"], "batch_max_wait_time"), min_wait)
    return ConsumerOptions(
        station_name=station,
        name=consumer,
        consumer_group=group,
        pull_interval=check_seconds(given["pull_interval"], "pull_interval"),
        batch_size=_batch_size(given["batch_size"]),
        batch_max_wait_time=wait,
        max_ack_time=check_seconds(given["max_ack_time"], "max_ack_time", positive=True),
        max_msg_deliveries=deliveries,
        start_consume_from_seq=start,
        last_messages=last,
    )


def consumer_options(
    station_name: str, name: str, **options: Unpack[ConsumerKeywords]
) -> ConsumerOptions:
    """Validate :func:`create_consumer` arguments (docs/protocol.md §7.1; each option is
    documented in :class:`ConsumerKeywords`).

    ``batch_max_wait_time`` below 1 ms is raised to 1 ms.

    Raises:
        TypeError: an option :class:`ConsumerKeywords` does not declare.
        LocalProtocolError: bad station/consumer/group name (broker texts), ``Batch size can not
            be greater than 5000 or less than 1``, ``startConsumeFromSequence has to be a positive
            number``, ``min value for LastMessages is -1``, ``Consumer creation options can't
            contain both startConsumeFromSequence and lastMessages``, max_msg_deliveries outside
            1..10, negative or non-numeric durations.
    """
    check_keywords("create_consumer", options, _CONSUMER_KEYS)
    # 1 ms floor: ``expires`` 0 would make the pull wait forever on the server (docs/protocol.md
    # §7.6), the opposite of a short wait.
    return _consumer(station_name, name, {**_CONSUMER_DEFAULTS, **options}, min_wait=0.001)


def fetch_consumer_options(
    station_name: str, name: str, **options: Unpack[ConsumerKeywords]
) -> ConsumerOptions:
    """Validate the consumer half of ``conn.fetch_messages`` (defaults of docs/protocol.md §7.13).

    Differs from :func:`consumer_options`: wait 100 ms (values below are raised to 100 ms),
    max_ack_time 10 s, max_msg_deliveries 2. ``start_consume_from_seq``/``last_messages`` are
    accepted here although the Go SDK always uses 1/-1 (its README documents them;
    docs/protocol.md §7.13).

    Raises:
        TypeError: an option :class:`ConsumerKeywords` does not declare.
        LocalProtocolError: as :func:`consumer_options`.
    """
    check_keywords("fetch_messages", options, _CONSUMER_KEYS)
    # The connection-level fetch raises short waits to 100 ms, as the Go SDK does
    # (docs/protocol.md §7.13).
    return _consumer(station_name, name, {**_FETCH_MESSAGES_DEFAULTS, **options}, min_wait=0.1)


class FetchKeywords(TypedDict, total=False):
    """The keyword options of ``Consumer.fetch(batch_size=10, **options)`` (docs/protocol.md
    §7.7)."""

    #: Also request the next batch in the background now; the next call returns it at once
    #: (default False).
    prefetch: bool
    #: Read only the partition this key hashes to (by default every partition of the station,
    #: served in turn).
    partition_key: str | None
    #: Read only this 1-based partition (by default every partition).
    partition_number: int | None
    #: Seconds this fetch waits at most, if shorter than ``batch_max_wait_time`` (default
    #: None).
    timeout: float | None


_FETCH_KEYS: Final = _keys(FetchKeywords)


class FetchMessagesKeywords(ConsumerKeywords, FetchKeywords, total=False):
    """The keyword options of ``Connection.fetch_messages(station_name, consumer_name,
    **options)``: those of :class:`ConsumerKeywords` (the consumer is created on first use and
    cached; later calls ignore them) and of :class:`FetchKeywords`, ``batch_size`` being both
    the consumer's and this fetch's. The Go SDK's ``FetchMessages`` defaults apply
    (docs/protocol.md §7.13): ``batch_max_wait_time`` 0.1 (and at least 0.1),
    ``max_ack_time`` 10.0, ``max_msg_deliveries`` 2."""


_FETCH_MESSAGES_KEYS: Final = _keys(FetchMessagesKeywords)


def fetch_messages_options(
    station_name: str, name: str, **options: Unpack[FetchMessagesKeywords]
) -> tuple[ConsumerOptions, FetchOptions]:
    """Validate ``conn.fetch_messages`` arguments: the consumer it creates on first use (as
    :func:`fetch_consumer_options`) and the fetch (as :func:`fetch_options`).

    Raises:
        TypeError: an option :class:`FetchMessagesKeywords` does not declare.
        LocalProtocolError: as :func:`consumer_options` and :func:`fetch_options`.
    """
    check_keywords("fetch_messages", options, _FETCH_MESSAGES_KEYS)
    given: FetchMessagesKeywords = {**_FETCH_MESSAGES_DEFAULTS, **options}
    consumer = _consumer(station_name, name, given, min_wait=0.1)
    return consumer, _fetch(consumer.batch_size, options, eager=False)


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Normalised :meth:`Consumer.fetch` / :meth:`Consumer.consume` options (see
    :class:`FetchKeywords`)."""

    batch_size: int = 10
    prefetch: bool = False
    partition_key: str | None = None
    partition_number: int | None = None
    timeout: float | None = None
    eager: bool = False


def fetch_options(
    batch_size: int = 10, *, eager: bool = False, **options: Unpack[FetchKeywords]
) -> FetchOptions:
    """Validate :meth:`Consumer.fetch` arguments (each option is documented in
    :class:`FetchKeywords`).

    ``timeout`` (seconds, > 0, default None: ``batch_max_wait_time``) bounds how long this one
    fetch waits: its pull expires after ``min(timeout, batch_max_wait_time)``. ``eager``
    (default False; not a public option): return as soon as a read brought at least one
    message (the consume loop and iteration; see ``Pulls.hand_over``).

    Raises:
        TypeError: an option :class:`FetchKeywords` does not declare.
        LocalProtocolError: ``Batch size can not be greater than 5000 or less than 1``,
            ``can not use both partition number and partition key`` (lower-case ``c``: the Go
            consumer text, docs/protocol.md §7.5), ``Partition number is out of range`` (< 1).
    """
    check_keywords("fetch", options, _FETCH_KEYS)
    return _fetch(batch_size, options, eager=eager)


def _fetch(batch_size: int, options: FetchKeywords, *, eager: bool) -> FetchOptions:
    key, number = check_partition(
        options.get("partition_key"),
        options.get("partition_number"),
        "can not use both partition number and partition key",
    )
    timeout = options.get("timeout")
    return FetchOptions(
        batch_size=_batch_size(batch_size),
        prefetch=check_bool(options.get("prefetch", False), "prefetch"),
        partition_key=key,
        partition_number=number,
        timeout=None if timeout is None else check_seconds(timeout, "timeout", positive=True),
        eager=check_bool(eager, "eager"),
    )
