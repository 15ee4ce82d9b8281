"""The names every frontend exports from the core: errors, enums, value types.

Each frontend's ``__init__`` re-exports this module whole (``__all__ += _public.__all__``), so
an error class added to the core is importable from memphis_sync, memphis_trio and
memphis_asyncio alike; ``tests/frontends/test_api_parity.py`` checks that every error the core
can raise is here.
"""

from __future__ import annotations

from memphis_core import (
    TLS,
    AsyncProduceError,
    CloseIncompleteError,
    ConnectionClosedError,
    ConnectionLostError,
    ConsumeHandlerError,
    Headers,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisSchemaError,
    MessageAlreadySettledError,
    MessageTypeError,
    MissingExtraError,
    NoRespondersError,
    ProduceFailure,
    PubAck,
    RemoteProtocolError,
    RequestAbandonedError,
    RequestTimeoutError,
    RetentionType,
    SchemaType,
    SchemaValidationError,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
    StorageType,
    __version__,
)

__all__ = [
    "TLS",
    "AsyncProduceError",
    "CloseIncompleteError",
    "ConnectionClosedError",
    "ConnectionLostError",
    "ConsumeHandlerError",
    "Headers",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MessageAlreadySettledError",
    "MessageTypeError",
    "MissingExtraError",
    "NoRespondersError",
    "ProduceFailure",
    "PubAck",
    "RemoteProtocolError",
    "RequestAbandonedError",
    "RequestTimeoutError",
    "RetentionType",
    "SchemaType",
    "SchemaValidationError",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
    "StorageType",
    "__version__",
]
