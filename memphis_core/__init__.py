"""memphis_core: the sans-IO Memphis and NATS protocol core.

No sockets, threads, clocks, files or ``async``: bytes go in through ``receive_data``, bytes come
out of ``data_to_send``, timers are driven by ``next_deadline``/``handle_timeout(now)``, and results
are events and :class:`Operation` handles. ``memphis_sync``, ``memphis_trio`` and
``memphis_asyncio`` are thin frontends over it; anyone can drive it from another event loop (see
``examples/custom_loop.py``). Only the standard library is imported here; the schema libraries
load on first use.

Two layers, each a subpackage, with a one-way dependency:

* ``memphis_core.nats``: NATS framing, the connection session (handshake, auth, keepalive,
  reconnect and replay), and requests correlated on one reply inbox;
* ``memphis_core.memphis``: the Memphis client on top of it (control plane, producers,
  consumers, JetStream pulls and acks, partitions, schemas, DLS).

This module exports the public names of both; import from here.
"""

from __future__ import annotations

from ._version import __version__
from .memphis._client import APP_ID, DRAIN_TIMEOUT, Client, ClientEvent
from .memphis._consumers import ConsumerError
from .memphis._deliveries import ConsumerState, Delivery, MessageView, consume_should_stop
from .memphis._dispatch import ControlRetry
from .memphis._engine import Engine, Lifecycle, react
from .memphis._enums import RetentionType, SchemaType, StorageType
from .memphis._errors import (
    AsyncProduceError,
    CloseIncompleteError,
    ConsumeHandlerError,
    MemphisHeaderError,
    MemphisSchemaError,
    MessageAlreadySettledError,
    MessageTypeError,
    PermissionsViolationError,
    ProduceFailure,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
)
from .memphis._introspection import (
    ConsumerInfo,
    DlsSettings,
    PartitionInfo,
    PartitionLag,
    SchemaInfo,
    StationInfo,
    StationNotFoundError,
)
from .memphis._jetstream import PubAck
from .memphis._operation import Operation
from .memphis._options import (
    DEFAULT_ACK_WAIT,
    TLS,
    ConnectOptions,
    ConsumerOptions,
    FetchOptions,
    ProduceOptions,
    ProducerOptions,
    StationOptions,
    connect_options,
    consumer_options,
    fetch_consumer_options,
    fetch_options,
    produce_options,
    producer_options,
    station_options,
)
from .memphis._producers import ProduceOperation, ProducerState
from .memphis._schemas import Schema, SchemaValidationError
from .memphis._stations import StationState
from .memphis._validators import MissingExtraError
from .nats._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    NoRespondersError,
    RemoteProtocolError,
    RequestAbandonedError,
    RequestTimeoutError,
)
from .nats._events import (
    Closed,
    Connected,
    Disconnected,
    PingCompleted,
    ReconnectDue,
    ReplyReceived,
    RequestFailed,
    ServerError,
    SessionEvent,
    TLSUpgradeRequired,
    TransportEvent,
)
from .nats._frames import Err, Frame, Info, Msg, Ok, Ping, Pong
from .nats._headers import Headers, encode_header_block, parse_header_block
from .nats._parser import ParseError, Parser
from .nats._pool import server_name
from .nats._session import Session
from .nats._state import ConnState

__all__ = [
    "APP_ID",
    "DEFAULT_ACK_WAIT",
    "DRAIN_TIMEOUT",
    "TLS",
    "AsyncProduceError",
    "Client",
    "ClientEvent",
    "CloseIncompleteError",
    "Closed",
    "ConnState",
    "ConnectOptions",
    "Connected",
    "ConnectionClosedError",
    "ConnectionLostError",
    "ConsumeHandlerError",
    "ConsumerError",
    "ConsumerInfo",
    "ConsumerOptions",
    "ConsumerState",
    "ControlRetry",
    "Delivery",
    "Disconnected",
    "DlsSettings",
    "Engine",
    "Err",
    "FetchOptions",
    "Frame",
    "Headers",
    "Info",
    "Lifecycle",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MessageAlreadySettledError",
    "MessageTypeError",
    "MessageView",
    "MissingExtraError",
    "Msg",
    "NoRespondersError",
    "Ok",
    "Operation",
    "ParseError",
    "Parser",
    "PartitionInfo",
    "PartitionLag",
    "PermissionsViolationError",
    "Ping",
    "PingCompleted",
    "Pong",
    "ProduceFailure",
    "ProduceOperation",
    "ProduceOptions",
    "ProducerOptions",
    "ProducerState",
    "PubAck",
    "ReconnectDue",
    "RemoteProtocolError",
    "ReplyReceived",
    "RequestAbandonedError",
    "RequestFailed",
    "RequestTimeoutError",
    "RetentionType",
    "Schema",
    "SchemaInfo",
    "SchemaType",
    "SchemaValidationError",
    "ServerError",
    "Session",
    "SessionEvent",
    "StationInfo",
    "StationNotFoundError",
    "StationOptions",
    "StationState",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
    "StorageType",
    "TLSUpgradeRequired",
    "TransportEvent",
    "__version__",
    "connect_options",
    "consume_should_stop",
    "consumer_options",
    "encode_header_block",
    "fetch_consumer_options",
    "fetch_options",
    "parse_header_block",
    "produce_options",
    "producer_options",
    "react",
    "server_name",
    "station_options",
]
