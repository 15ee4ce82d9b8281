"""The value types, enums and option declarations every frontend exports from the core.

Each frontend's ``__init__`` re-exports this module whole (``__all__ += _public.__all__``), and
the errors' one home, ``memphis_core/memphis/_errors.py``, whole too: so the three export one
identical set of core names, the same objects, and an error class added to that home is exported
by every frontend. ``tests/frontends/test_api_parity.py`` checks both.
"""

from __future__ import annotations

from memphis_core import (
    TLS,
    ConsumerInfo,
    DlsSettings,
    Headers,
    PartitionInfo,
    PartitionLag,
    PubAck,
    RetentionType,
    SchemaInfo,
    SchemaType,
    StationInfo,
    StorageType,
    __version__,
)
from memphis_core.memphis._options import (
    ConnectKeywords,
    ConsumerKeywords,
    FetchKeywords,
    FetchMessagesKeywords,
    ProduceKeywords,
    StationKeywords,
)

from ._connect import ConnectArgs

__all__ = [
    "TLS",
    "ConnectArgs",
    "ConnectKeywords",
    "ConsumerInfo",
    "ConsumerKeywords",
    "DlsSettings",
    "FetchKeywords",
    "FetchMessagesKeywords",
    "Headers",
    "PartitionInfo",
    "PartitionLag",
    "ProduceKeywords",
    "PubAck",
    "RetentionType",
    "SchemaInfo",
    "SchemaType",
    "StationInfo",
    "StationKeywords",
    "StorageType",
    "__version__",
]
