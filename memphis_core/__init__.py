"""memphis_core: the sans-IO Memphis and NATS protocol core.

No sockets, threads, clocks or ``async``: bytes go in through ``receive_data``, bytes come out of
``data_to_send``, timers are driven by ``next_deadline``/``handle_timeout(now)``, and results are
events and :class:`Operation` handles. ``memphis_sync``, ``memphis_trio`` and ``memphis_asyncio``
are thin frontends over it; anyone can drive it from another event loop (see
``examples/custom_loop.py``). Only the standard library is imported here; the schema libraries
load on first use.
"""

from __future__ import annotations

from ._client import APP_ID, Client, ConsumerError
from ._consumer import ConsumerState, MessageView, ReceivedMessage, consume_should_stop
from ._enums import RetentionType, SchemaType, StorageType
from ._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisSchemaError,
    NoRespondersError,
    RemoteProtocolError,
    RequestTimeoutError,
    StationUnreachableError,
)
from ._events import (
    Closed,
    Connected,
    Disconnected,
    Event,
    FlushCompleted,
    ReconnectDue,
    ReplyReceived,
    RequestFailed,
    ServerError,
    TLSUpgradeRequired,
)
from ._frames import Err, Frame, Info, Msg, Ok, Ping, Pong
from ._headers import Headers, encode_header_block, parse_header_block
from ._jetstream import PubAck
from ._operation import Operation
from ._options import (
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
from ._parser import ParseError, Parser
from ._producer import ProducerState, StationState
from ._schemas import MissingExtraError, Schema, SchemaValidationError
from ._session import Session
from ._state import ConnState
from ._tls import tls_context
from ._version import __version__

__all__ = [
    "APP_ID",
    "TLS",
    "Client",
    "Closed",
    "ConnState",
    "ConnectOptions",
    "Connected",
    "ConnectionClosedError",
    "ConnectionLostError",
    "ConsumerError",
    "ConsumerOptions",
    "ConsumerState",
    "Disconnected",
    "Err",
    "Event",
    "FetchOptions",
    "FlushCompleted",
    "Frame",
    "Headers",
    "Info",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MessageView",
    "MissingExtraError",
    "Msg",
    "NoRespondersError",
    "Ok",
    "Operation",
    "ParseError",
    "Parser",
    "Ping",
    "Pong",
    "ProduceOptions",
    "ProducerOptions",
    "ProducerState",
    "PubAck",
    "ReceivedMessage",
    "ReconnectDue",
    "RemoteProtocolError",
    "ReplyReceived",
    "RequestFailed",
    "RequestTimeoutError",
    "RetentionType",
    "Schema",
    "SchemaType",
    "SchemaValidationError",
    "ServerError",
    "Session",
    "StationOptions",
    "StationState",
    "StationUnreachableError",
    "StorageType",
    "TLSUpgradeRequired",
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
    "station_options",
    "tls_context",
]
