"""NATS permissions of application users in user/password mode (docs/broker.md, "Permissions").

An application user (``<name>$1`` / ``<name>``) may do what the Memphis protocol and the official
SDKs (Go, Node, Python and ours) need, and nothing that would let it bypass the control plane:

* publish the ``$memphis_*`` control requests and reports, produce to station subjects
  (``<internal>$<p>.final``, a legacy station's ``<internal>.final``), ask ``$JS.API.INFO``,
  ``STREAM.NAMES`` and ``STREAM.INFO`` / ``CONSUMER.INFO`` / ``CONSUMER.NAMES``, pull with
  ``CONSUMER.MSG.NEXT`` and ack (``$JS.ACK.>``);
* subscribe to anything (its ``_INBOX.>`` replies, ``$memphis_sdk_clients_updates``, the per
  station ``$memphis_schema_updates_<internal>`` / ``$memphis_functions_updates_<internal>``
  pushes and ``$memphis_dls_<internal>.<group>`` resends are single-token or arbitrary
  subjects that NATS wildcards cannot narrow further) except the JetStream API, the KV
  subjects, the system account's subjects and the control plane's own request subjects (so
  that no application user can answer, or take, another client's control request).

Everything else is refused by nats-server with a permissions violation: creating, updating,
deleting or purging streams and consumers directly, reading messages by ``STREAM.MSG.GET`` /
``DIRECT.GET``, and every read or write of the control plane's state (the ``KV_memphis_*``
buckets and the DLS capture streams). Root and the control plane keep full rights.
"""

from __future__ import annotations

import json
from typing import Final

from memphis_broker._dls import INTERNAL_STREAMS
from memphis_broker._durability import BROKER_INFO
from memphis_broker._store import BUCKETS
from memphis_core.memphis import _control as rq

__all__ = ["APP_PUBLISH_ALLOW", "APP_PUBLISH_DENY", "APP_SUBSCRIBE_DENY", "render_permissions"]

#: Subjects the SDKs send control requests and reports to (docs/protocol.md §2).
_CONTROL_SUBJECTS: Final = (
    rq.STATION_CREATIONS,
    rq.STATION_DESTRUCTIONS,
    rq.PRODUCER_CREATIONS,
    rq.PRODUCER_DESTRUCTIONS,
    rq.CONSUMER_CREATIONS,
    rq.CONSUMER_DESTRUCTIONS,
    rq.SCHEMA_CREATIONS,
    rq.SCHEMA_ATTACHMENTS,
    rq.SCHEMA_DETACHMENTS,
    rq.SCHEMAVERSE_DLS,
    rq.NOTIFICATIONS,
    rq.PM_ACKS,
    rq.NACKED_DLS,
)

#: Read-only extensions of ours that application users may ask too.
_INFO_SUBJECTS: Final = (BROKER_INFO,)

#: The control plane's own streams: its KV buckets and its DLS capture streams.
INTERNAL_STREAM_NAMES: Final = (
    *(f"KV_memphis_{bucket}" for bucket in BUCKETS),
    *(stream for stream, _subject, _durable in INTERNAL_STREAMS),
)

APP_PUBLISH_ALLOW: Final = (
    *_CONTROL_SUBJECTS,
    *_INFO_SUBJECTS,
    "*.final",  # produce: <internal>$<p>.final (docs/protocol.md §6.1)
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.CONSUMER.NAMES.*",
    "$JS.API.CONSUMER.INFO.*.*",
    "$JS.API.CONSUMER.MSG.NEXT.*.*",
    "$JS.ACK.>",
)

# Deny wins over allow in nats-server: the allowed read-only API calls and acks stop short of
# the control plane's streams, and the KV API is refused outright.
APP_PUBLISH_DENY: Final = (
    "$KV.>",
    *(
        subject
        for stream in INTERNAL_STREAM_NAMES
        for subject in (
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.NAMES.{stream}",
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
        )
    ),
)

APP_SUBSCRIBE_DENY: Final = ("$JS.>", "$KV.>", "$SYS.>", *_CONTROL_SUBJECTS, *_INFO_SUBJECTS)


def _list(subjects: tuple[str, ...]) -> str:
    # NATS config accepts JSON-style double-quoted strings; quoting also keeps `$` literal.
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"


def render_permissions() -> str:
    """The ``permissions`` value of an application user's entry in ``nats-server.conf``."""
    return (
        f"{{publish: {{allow: {_list(APP_PUBLISH_ALLOW)}, deny: {_list(APP_PUBLISH_DENY)}}}, "
        f'subscribe: {{allow: [">"], deny: {_list(APP_SUBSCRIBE_DENY)}}}}}'
    )
