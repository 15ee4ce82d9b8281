"""JetStream wire details the client needs: pub-acks, pull requests, ack subjects, ack bodies.

Facts from the JetStream API reference (docs.nats.io, "JetStream wire API"): a publish to a
stream subject with a reply inbox is answered by a PubAck JSON object (``stream``, ``seq``,
optional ``duplicate``) or ``{"error": {"code", "err_code", "description"}}``; a pull is a
request to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`` whose messages arrive on the
request's reply subject, ended early by status 404 (no messages), 408 (request expired) or 409
(consumer deleted, too many waiting pulls, ...), with 100 as an idle heartbeat; every delivered
message carries its metadata in the reply (ack) subject.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from memphis_core.nats._errors import MemphisError, RemoteProtocolError

__all__ = [
    "ACK",
    "IN_PROGRESS",
    "NAK",
    "TERM",
    "AckMetadata",
    "PubAck",
    "consumer_info_subject",
    "js_api_error",
    "nak_delay_body",
    "parse_ack_subject",
    "parse_pub_ack",
    "pull_body",
    "pull_subject",
    "stream_info_subject",
]

# Ack bodies are the raw JetStream verbs, published without a reply (docs/protocol.md §7.8): no
# confirmation, which is why a close ends with a flush PING.
ACK: Final = b"+ACK"
NAK: Final = b"-NAK"
TERM: Final = b"+TERM"
#: "Still working on it": JetStream restarts the message's ack timer (AckProgress).
IN_PROGRESS: Final = b"+WPI"
# JetStream bodies take durations in nanoseconds, Memphis bodies in milliseconds (docs/protocol.md
# §0.2): keep the two conversions apart.
_NS: Final = 1_000_000_000


class PubAck:
    """What the stream said about one produced message."""

    __slots__ = ("duplicate", "sequence", "stream")

    def __init__(self, stream: str, sequence: int, duplicate: bool) -> None:
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return (
            f"PubAck(stream={self.stream!r}, sequence={self.sequence}, duplicate={self.duplicate})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PubAck) and (self.stream, self.sequence, self.duplicate) == (
            other.stream,
            other.sequence,
            other.duplicate,
        )

    # Equality by value but mutable slots: unhashable, as a dataclass with eq and no frozen would
    # be.
    __hash__ = None  # type: ignore[assignment]


def parse_pub_ack(payload: bytes) -> PubAck:
    """Decode a PubAck.

    Raises:
        MemphisError: the stream refused the message (the text is JetStream's description, with
            the Go SDK's ``nats`` -> ``memphis`` rewrite, docs/protocol.md §0.3).
        RemoteProtocolError: not a PubAck at all.
    """
    # A sync produce parses every PubAck; the regex handles nats-server's usual shape several times
    # faster than json.loads, and anything unusual falls through to the exact parse below.
    fast = _fast_pub_ack(payload)
    if fast is not None:
        return fast
    try:
        body: Any = json.loads(payload)
    except ValueError:
        raise RemoteProtocolError(f"malformed pub-ack: {payload[:80]!r}") from None
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"malformed pub-ack: {payload[:80]!r}")
    error = body.get("error")
    if error is not None:
        description = error.get("description", "") if isinstance(error, dict) else str(error)
        # The Go SDK rewrites ``nats`` to ``memphis`` in every error text (docs/protocol.md §0.3);
        # doing the same keeps code that matches on texts portable between the SDKs. But a
        # description that already starts with "nats: " must not come out as
        # "memphis: memphis: ..." (a field report).
        text = str(description).replace("nats", "memphis")
        raise MemphisError(text if text.startswith("memphis: ") else f"memphis: {text}")
    stream, seq = body.get("stream"), body.get("seq")
    if not isinstance(stream, str) or not isinstance(seq, int):
        raise RemoteProtocolError(f"malformed pub-ack: {payload[:80]!r}")
    # A duplicate is success: the first copy is stored, and the msg-id did its job (docs/protocol.md
    # §6.7).
    return PubAck(stream, seq, bool(body.get("duplicate", False)))


# nats-server writes a successful PubAck as {"stream":"<name>","seq":<n>}: no domain, no
# duplicate flag. Only that whole shape is read without ``json.loads``; anything else (an
# error, a duplicate, a domain, escapes, another key order) takes the JSON decoder. One
# ``fullmatch`` replaced a prefix match plus two substring tests: 0.20 against 0.50 us per
# PubAck (timeit, CPython 3.11), paid by every async produce.
_PUB_ACK: Final = re.compile(rb'\{"stream":"([^"\\]*)","seq":(\d{1,20})\}').fullmatch


def is_plain_pub_ack(payload: bytes) -> bool:
    """Whether ``payload`` is nats-server's plain success PubAck, which
    :func:`parse_pub_ack` is certain to read (so its decoding can wait until someone asks)."""
    return _PUB_ACK(payload) is not None


def _fast_pub_ack(payload: bytes) -> PubAck | None:
    """Read nats-server's plain PubAck with one regex match instead of ``json.loads``; None
    for anything else, which goes through the JSON decoder."""
    match = _PUB_ACK(payload)
    if match is None:
        return None
    stream, seq = match.groups()
    return PubAck(stream.decode("utf-8", "surrogateescape"), int(seq), False)


def pull_subject(stream: str, durable: str) -> str:
    # Stream and durable names are internal names (docs/protocol.md §5.2): no dots, so they are
    # single subject tokens and the subject needs no escaping.
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"


def consumer_info_subject(stream: str, durable: str) -> str:
    return f"$JS.API.CONSUMER.INFO.{stream}.{durable}"


def stream_info_subject(stream: str) -> str:
    # The same single-token rule as ``pull_subject``: a stream name has no dots.
    return f"$JS.API.STREAM.INFO.{stream}"


def js_api_error(payload: bytes) -> str | None:
    """The ``error.description`` of a JetStream API reply, or None on success.

    A reply that is not a JSON object counts as an error, never as success: nothing that could
    not be read may confirm that a stream or durable exists.
    """
    try:
        body = json.loads(payload)
    except ValueError:
        return f"malformed JetStream reply: {payload[:80]!r}"
    if not isinstance(body, dict):
        return f"malformed JetStream reply: {payload[:80]!r}"
    error = body.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("description", error))
    return str(error)


def pull_body(batch: int, expires: float) -> bytes:
    """The pull request: at most ``batch`` messages, the server holds it ``expires`` seconds."""
    # ``expires`` makes the server end the pull with a 408 when it runs out, so an idle station
    # costs one request per wait, not a held request the client must cancel (docs/protocol.md §7.6).
    # No ``no_wait``: an empty stream should be waited on, not answered at once.
    return b'{"batch":%d,"expires":%d}' % (batch, int(expires * _NS))


def nak_delay_body(seconds: float) -> bytes:
    """``-NAK {"delay": ns}``: redeliver after the delay (still counts as a delivery)."""
    # The delay still counts as a delivery toward max_msg_deliveries (docs/protocol.md §7.8): a
    # message delayed too often becomes a dead letter like any other.
    return b'-NAK {"delay":%d}' % int(seconds * _NS)


class AckMetadata:
    """The metadata JetStream encodes in a delivered message's reply subject."""

    __slots__ = (
        "consumer",
        "consumer_seq",
        "delivered",
        "pending",
        "stream",
        "stream_seq",
        "timestamp_ns",
    )

    def __init__(
        self,
        stream: str,
        consumer: str,
        delivered: int,
        stream_seq: int,
        consumer_seq: int,
        timestamp_ns: int,
        pending: int,
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self.delivered = delivered
        self.stream_seq = stream_seq
        self.consumer_seq = consumer_seq
        self.timestamp_ns = timestamp_ns
        self.pending = pending


def parse_ack_subject(reply: str) -> AckMetadata:
    """Parse ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``.

    The newer form inserts ``<domain>.<account hash>`` after ``$JS.ACK`` and may append a token;
    both are accepted (ADR-15).

    Raises:
        RemoteProtocolError: not a JetStream ack subject.
    """
    tokens = reply.split(".")
    count = len(tokens)
    if count < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise RemoteProtocolError(f"not a JetStream ack subject: {reply!r}")
    # Nine tokens is the classic form; anything longer is the v2 form with domain and account hash
    # after ``$JS.ACK`` (and perhaps a trailing random token), so the fields start at 4.
    base = 2 if count == 9 else 4
    if count - base < 7:
        raise RemoteProtocolError(f"not a JetStream ack subject: {reply!r}")
    try:
        numbers = [int(t) for t in tokens[base + 2 : base + 7]]
    except ValueError:
        raise RemoteProtocolError(f"not a JetStream ack subject: {reply!r}") from None
    return AckMetadata(tokens[base], tokens[base + 1], *numbers)
