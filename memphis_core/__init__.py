"""memphis_core: the sans-IO Memphis and NATS protocol core.

No sockets, threads, clocks, files or ``async``: bytes go in through ``receive_data``, bytes come
out of ``data_to_send``, timers are driven by ``next_deadline``/``handle_timeout(now)``, and results
are events and :class:`Operation` handles. ``memphis_sync``, ``memphis_trio`` and
``memphis_asyncio`` are thin frontends over it; anyone can drive it from another event loop (see
``examples/custom_loop.py`` and ``docs/sansio.md``). Only the standard library is imported here;
the schema libraries load on first use.

Two layers, each a subpackage, with a one-way dependency:

* ``memphis_core.nats``: NATS framing, the connection session (handshake, auth, keepalive,
  reconnect and replay), and requests correlated on one reply inbox;
* ``memphis_core.memphis``: the Memphis client on top of it (control plane, producers,
  consumers, JetStream pulls and acks, partitions, schemas, DLS).

This module exports what an embedder (someone writing their own I/O loop) needs, and nothing
else; the frontends and the tests import the internals from the modules that define them.

Driving a connection:

* ``Client``: one logical connection that survives reconnects; the only way in.
* ``Operation``: the handle a call returns; ``done``, ``error``, ``outcome()``.
* ``ClientEvent``: the union of what ``Client.events()`` returns, each one below.
* ``TLSUpgradeRequired``: wrap the transport in TLS, then call ``tls_established()``.
* ``Connected``: the handshake finished (``reconnected`` after a reconnect).
* ``Disconnected``: close the transport; a ``ReconnectDue`` or a ``Closed`` follows.
* ``ReconnectDue``: dial the server it names, then ``connection_made``/``connection_failed``.
* ``Closed``: close the transport; the client is finished (``error`` says why, if not asked).
* ``ServerError``: a non-fatal ``-ERR`` from the server; nothing to do but log it.
* ``ConsumerError``: hand the error to that consumer's error handler.
* ``ControlRetry``: a control request is retried (a JetStream election); log it.
* ``react``: the one event → action table every engine uses; it calls the five actions of an
  ``Engine`` (``drop_transport``, ``dial``, ``upgrade_tls``, ``finish``, ``consumer_error``).
* ``Lifecycle``: an engine's start/drain/close policy (start deadline, drain then close,
  crash wrapping), as a state table.

Options, each validated before anything is sent (bad input raises ``LocalProtocolError``):

* ``connect_options``: the ``ConnectOptions`` a ``Client`` is made from.
* ``TLS``: the mutual-TLS files of ``connect_options(tls=...)``.
* ``station_options``: the argument of ``Client.create_station``.
* ``producer_options``: the argument of ``Client.create_producer``.
* ``produce_options``: the per-message options of ``Client.produce``.
* ``consumer_options``: the argument of ``Client.create_consumer``.
* ``ConnectKeywords``, ``StationKeywords``, ``ProduceKeywords``, ``ConsumerKeywords``,
  ``FetchKeywords``, ``FetchMessagesKeywords``: the keyword options of those builders (and of
  the frontends' calls), declared once, each field documented with its default.

What operations give back:

* ``ProducerState``: a registered producer, passed to ``produce``/``destroy_producer``.
* ``ConsumerState``: a registered consumer, passed to ``fetch``/``destroy_consumer``.
* ``Delivery``: a received message, passed to ``ack``/``nack``/``delay``/``dead_letter``.
* ``PubAck``: the stream's answer to one produce (stream, sequence, duplicate).
* ``Headers``: multi-valued message headers.
* ``StationInfo``, ``PartitionInfo``, ``DlsSettings``: what ``station_info`` reports.
* ``ConsumerInfo``, ``PartitionLag``: what ``consumer_info`` reports.
* ``SchemaInfo``: one schema, as ``schemas`` lists it.
* ``RetentionType``, ``StorageType``, ``SchemaType``: ``str`` enums of the wire values.
* ``__version__``: the distribution's version.

Errors: every class of the hierarchy drawn in ``memphis_core/memphis/_errors.py``, the one
module that holds them all (``MemphisError`` is the root), and ``ProduceFailure``, one failed
async produce as ``AsyncProduceError`` and ``CloseIncompleteError`` carry it.
"""

from __future__ import annotations

from ._version import __version__
from .memphis import _errors
from .memphis._client import Client, ClientEvent
from .memphis._consumers import ConsumerError
from .memphis._deliveries import ConsumerState, Delivery
from .memphis._dispatch import ControlRetry
from .memphis._engine import Engine, Lifecycle, react
from .memphis._enums import RetentionType, SchemaType, StorageType
from .memphis._errors import *  # noqa: F403 - the whole hierarchy, listed in _errors.__all__
from .memphis._introspection import (
    ConsumerInfo,
    DlsSettings,
    PartitionInfo,
    PartitionLag,
    SchemaInfo,
    StationInfo,
)
from .memphis._jetstream import PubAck
from .memphis._operation import Operation
from .memphis._options import (
    TLS,
    ConnectKeywords,
    ConsumerKeywords,
    FetchKeywords,
    FetchMessagesKeywords,
    ProduceKeywords,
    StationKeywords,
    connect_options,
    consumer_options,
    produce_options,
    producer_options,
    station_options,
)
from .memphis._producers import ProducerState
from .nats._events import (
    Closed,
    Connected,
    Disconnected,
    ReconnectDue,
    ServerError,
    TLSUpgradeRequired,
)
from .nats._headers import Headers

__all__ = [
    "TLS",
    "Client",
    "ClientEvent",
    "Closed",
    "ConnectKeywords",
    "Connected",
    "ConsumerError",
    "ConsumerInfo",
    "ConsumerKeywords",
    "ConsumerState",
    "ControlRetry",
    "Delivery",
    "Disconnected",
    "DlsSettings",
    "Engine",
    "FetchKeywords",
    "FetchMessagesKeywords",
    "Headers",
    "Lifecycle",
    "Operation",
    "PartitionInfo",
    "PartitionLag",
    "ProduceKeywords",
    "ProducerState",
    "PubAck",
    "ReconnectDue",
    "RetentionType",
    "SchemaInfo",
    "SchemaType",
    "ServerError",
    "StationInfo",
    "StationKeywords",
    "StorageType",
    "TLSUpgradeRequired",
    "__version__",
    "connect_options",
    "consumer_options",
    "produce_options",
    "producer_options",
    "react",
    "station_options",
]
__all__ += _errors.__all__
