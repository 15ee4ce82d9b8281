"""Memphis object names: validation and the internal (JetStream-safe) form.

Pure helpers shared by the client (for schema names, checked client-side as the Go SDK does)
and by ``memphis_broker`` (which validates every station, producer, consumer and schema name).
Texts are exact: docs/protocol.md §5.1 / §5.2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_NAME_LENGTH",
    "TRACE_HEADERS",
    "internal_name",
    "is_shown_header",
    "is_user_header",
    "name_error",
    "trace_carrier",
]

# 128 itself is allowed although the broker's text says "under 128" (docs/protocol.md §5.1 rule 2):
# the text is kept word for word, the limit as the broker applies it.
MAX_NAME_LENGTH: Final = 128
# Lower case only: callers lower-case first where the broker does (§5.1). ``#`` and ``$`` are absent
# on purpose, so no external name can pass for an internal one (§5.2).
_ALLOWED: Final = re.compile(r"[a-z0-9_.-]*")
_EDGE: Final = frozenset("._-")


def internal_name(name: str) -> str:
    """Return the JetStream-safe form: lower case, every ``.`` replaced by ``#``.

    Used for stream names (``<internal>$<p>``), durable names and per-station subjects.
    """
    # ``.`` separates NATS subject tokens and is not allowed in stream or durable names; ``#`` is
    # safe there and cannot occur in a valid external name (docs/protocol.md §5.2).
    return name.lower().replace(".", "#")


def name_error(name: str, kind: str) -> str | None:
    """Return the broker's error text for an invalid ``name`` of object ``kind``, or None.

    ``kind`` is ``"Station"``, ``"Producer"``, ``"Consumer"`` or ``"Schema"``. The caller decides
    whether to lower-case first (the broker does for stations; the Go SDK does not for schemas).
    """
    if not name:
        return f"{kind} name can not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{kind} should be under {MAX_NAME_LENGTH} characters"
    if not _ALLOWED.fullmatch(name):
        return f"Only alphanumeric and the '_', '-', '.' characters are allowed in {kind}"
    if name[0] in _EDGE or name[-1] in _EDGE:
        return f"{kind} name can not start or end with non alphanumeric character"
    return None


#: Headers the SDK writes for its own use: the idempotency key (sent twice, ``msg-id`` for the
#: Memphis broker's JetStream fork and ``Nats-Msg-Id`` for stock JetStream). ``msg_id=`` is
#: how a caller sets them; a consumer does not see them among its message's headers.
_ID_HEADERS: Final = frozenset({"msg-id", "nats-msg-id"})


def is_user_header(key: str) -> bool:
    """Whether a header name belongs to the application: not ``$memphis*`` and not one of the
    idempotency headers. The one rule for both directions: producers may not send the others,
    and consumers do not see them in ``Message.headers``."""
    # The prefix test is case-sensitive, as in every Memphis SDK (header keys keep their case,
    # docs/protocol.md §6.5); the id headers are matched in any case, so that no spelling of
    # them can slip in beside the ones the SDK writes from ``msg_id``.
    return not key.startswith("$memphis") and key.lower() not in _ID_HEADERS


#: W3C trace context (docs/tracing.md): written on produce by the optional instrumentation and
#: read back by a consumer's; a message's ``headers`` do not show them. A producer may still
#: send them itself (propagating its own context by hand): they are not refused.
TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate"})
_NOT_SHOWN: Final = _ID_HEADERS | TRACE_HEADERS


def is_shown_header(key: str) -> bool:
    """Whether a received header is shown in ``Message.headers``: a user header
    (:func:`is_user_header`) that is not W3C trace context."""
    return not key.startswith("$memphis") and key.lower() not in _NOT_SHOWN


def trace_carrier(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The W3C trace context among a message's ``(name, value)`` headers, keyed in lower case
    (the first value of each): what an OpenTelemetry propagator extracts. The names are
    matched in any case, as they are hidden: a producer need not write them in lower case."""
    out: dict[str, str] = {}
    for key, value in headers:
        name = key.lower()
        if name in TRACE_HEADERS and name not in out:
            out[name] = value
    return out
