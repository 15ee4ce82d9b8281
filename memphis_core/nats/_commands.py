"""Encoders for the client side of the NATS client protocol: CONNECT, PUB, HPUB, SUB, UNSUB.

Every encoder validates what the caller gave it and raises ``LocalProtocolError`` before
producing a byte, so a bad subject never reaches the server (which would answer with
``-ERR 'Invalid Subject'`` and, for some errors, close the connection).

Subjects are dot-separated tokens (NATS "Subject-based messaging"): no empty token, no
whitespace or control character anywhere; ``*`` and ``>`` are wildcards only as whole tokens and
are meaningful only in SUB (``>`` only last). A publish subject or reply-to must not contain a
wildcard token: the server would reject it. Validated subjects are remembered in a small cache,
because a producer publishes to the same few subjects millions of times.

Text is encoded as UTF-8 with ``surrogateescape``, mirroring the parser, so a subject received
in a MSG can be used as a reply target byte-for-byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from memphis_core._version import __version__

from ._errors import LocalProtocolError
from ._headers import Headers, encode_header_block

__all__ = [
    "PING",
    "PONG",
    "PublishHeaders",
    "connect_fields",
    "encode_connect",
    "encode_hpub",
    "encode_pub",
    "encode_publish",
    "encode_reply_publish",
    "encode_request",
    "encode_sub",
    "encode_unsub",
    "subject_bytes",
    "validate_subject",
]

PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"

# Whitespace and control characters end a protocol field; the server rejects them in names.
_BAD_CHAR: Final = re.compile(r"[\x00-\x20\x7f]").search
# Module-level caches, shared by every session of the process: subjects are validated the same way
# for all of them. Cleared wholesale when full, which is cheaper than LRU bookkeeping and only
# matters to a client that produces to thousands of distinct subjects.
_CACHE_LIMIT: Final = 4096
_pub_cache: dict[str, bytes] = {}
_sub_cache: dict[str, bytes] = {}


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text!r} cannot be encoded") from None


def _check_subject(subject: object, *, wildcards: bool, what: str = "subject") -> bytes:
    if not isinstance(subject, str):
        raise LocalProtocolError(f"{what} must be str, not {type(subject).__name__}")
    if not subject or _BAD_CHAR(subject) is not None:
        raise LocalProtocolError(f"invalid {what} {subject!r}")
    # Split on ``.`` only: ``#`` and ``$`` are ordinary subject bytes for NATS, and stream names
    # use them (``orders#eu$1.final``, docs/protocol.md §5.2, §5.5).
    tokens = subject.split(".")
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if not token:
            raise LocalProtocolError(f"invalid {what} {subject!r}: empty token")
        if token in {"*", ">"}:
            if not wildcards:
                raise LocalProtocolError(f"invalid {what} {subject!r}: wildcards not allowed")
            if token == ">" and index != last:
                raise LocalProtocolError(f"invalid {what} {subject!r}: '>' must be last")
    return _encode(subject, what)


def _pub_subject(subject: str, what: str = "subject") -> bytes:
    # ``type(...) is str``: a str subclass could hash like a cached subject and yet encode
    # differently; such values take the checked path.
    encoded = _pub_cache.get(subject) if type(subject) is str else None
    if encoded is None:
        encoded = _check_subject(subject, wildcards=False, what=what)
        if len(_pub_cache) >= _CACHE_LIMIT:
            _pub_cache.clear()
        _pub_cache[subject] = encoded
    return encoded


def subject_bytes(subject: str) -> bytes:
    """The encoded form of a valid publish subject (validated once, then cached).

    Raises:
        LocalProtocolError: as :func:`validate_subject`.
    """
    return _pub_subject(subject)


def validate_subject(subject: str, *, wildcards: bool = False) -> None:
    """Check a subject as the encoders do.

    Raises:
        LocalProtocolError: if ``subject`` is not a valid publish subject (or, with
            ``wildcards=True``, subscription subject).
    """
    if wildcards:
        _check_subject(subject, wildcards=True)
    else:
        _pub_subject(subject)


def _payload_bytes(payload: object) -> bytes:
    # Slow path for anything but bytes (the callers test ``type(x) is bytes`` inline).
    try:
        return bytes(memoryview(payload))  # type: ignore[arg-type]  # checked at runtime
    except TypeError:
        raise LocalProtocolError(
            f"payload must be bytes-like, not {type(payload).__name__}"
        ) from None


def encode_connect(options: Mapping[str, object]) -> bytes:
    """``CONNECT {json}\\r\\n`` with compact JSON.

    Raises:
        LocalProtocolError: if ``options`` is not JSON-serialisable.
    """
    try:
        body = json.dumps(dict(options), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"CONNECT options are not JSON-serialisable: {exc}") from None
    # ensure_ascii (the default) escapes everything non-ASCII, so the line is pure ASCII.
    # A control line must fit max_control_line (4 KiB by default) on the server; CONNECT is small,
    # so no size check here.
    return b"CONNECT " + body.encode("ascii") + b"\r\n"


def _frame(
    subject: bytes, reply: bytes | None, block: bytes | None, data: bytes, max_payload: int
) -> bytes:
    """The one writer of PUB and HPUB: every publish and request ends here, already checked.

    ``max_payload`` < 0 skips the size check (the explicit encoders leave it to their caller).
    """
    if block:
        hlen = len(block)
        size = hlen + len(data)
        # Header block included: nats-server's max_payload limits the whole HPUB body, and exceeding
        # it makes the server close the connection, not just refuse the message.
        if 0 <= max_payload < size:
            raise _too_large(size, max_payload)
        if reply is None:
            return b"HPUB %b %d %d\r\n%b%b\r\n" % (subject, hlen, size, block, data)
        return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject, reply, hlen, size, block, data)
    size = len(data)
    if 0 <= max_payload < size:
        raise _too_large(size, max_payload)
    if reply is None:
        return b"PUB %b %d\r\n%b\r\n" % (subject, size, data)
    return b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, size, data)


def encode_pub(
    subject: str,
    payload: bytes | bytearray | memoryview,
    reply: str | None = None,
) -> bytes:
    """``PUB <subject> [reply-to] <#bytes>\\r\\n<payload>\\r\\n``.

    Raises:
        LocalProtocolError: invalid subject/reply (empty, whitespace, wildcard, empty token) or
            a payload that is not bytes-like.
    """
    subj = _pub_subject(subject)
    data = payload if type(payload) is bytes else _payload_bytes(payload)
    rep = None if reply is None else _pub_subject(reply, "reply")
    return _frame(subj, rep, None, data, -1)


def _header_block(header_block: bytes | bytearray | memoryview) -> bytes:
    hdr = header_block if type(header_block) is bytes else _payload_bytes(header_block)
    # Only the frame is checked, not each line: a wrong size would desynchronise the server's parser
    # and close the connection, while a bad header line only concerns that message.
    if hdr[:8] != b"NATS/1.0" or hdr[-4:] != b"\r\n\r\n" or len(hdr) < 12:
        raise LocalProtocolError("header_block must be a NATS/1.0 block ending in CRLF CRLF")
    return hdr


def encode_hpub(
    subject: str,
    # bytes-like, as ``_header_block`` takes it (annotated so for mypyc, docs/compiled.md)
    header_block: bytes | bytearray | memoryview,
    payload: bytes | bytearray | memoryview,
    reply: str | None = None,
) -> bytes:
    """``HPUB <subject> [reply-to] <#hdr> <#total>\\r\\n<headers><payload>\\r\\n``.

    ``header_block`` comes from ``encode_header_block`` (it is checked to start with
    ``NATS/1.0`` and end with an empty line, not re-parsed).

    Raises:
        LocalProtocolError: invalid subject/reply, a malformed header block, or a payload that
            is not bytes-like.
    """
    subj = _pub_subject(subject)
    hdr = _header_block(header_block)
    data = payload if type(payload) is bytes else _payload_bytes(payload)
    rep = None if reply is None else _pub_subject(reply, "reply")
    return _frame(subj, rep, hdr, data, -1)


def _check_sid(sid: object) -> int:
    if type(sid) is not int or sid < 0:
        raise LocalProtocolError(f"sid must be a non-negative int, not {sid!r}")
    return sid


def encode_sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    """``SUB <subject> [queue group] <sid>\\r\\n`` (wildcards allowed).

    Raises:
        LocalProtocolError: invalid subject, queue group name or sid.
    """
    subj = _sub_cache.get(subject) if type(subject) is str else None
    if subj is None:
        subj = _check_subject(subject, wildcards=True)
        if len(_sub_cache) >= _CACHE_LIMIT:
            _sub_cache.clear()
        _sub_cache[subject] = subj
    _check_sid(sid)
    # A queue group hands each message to one of its members (NATS queue subscriptions); plain
    # subscriptions have none.
    if queue is None:
        return b"SUB %b %d\r\n" % (subj, sid)
    if not isinstance(queue, str) or not queue or _BAD_CHAR(queue) is not None:
        raise LocalProtocolError(f"invalid queue group {queue!r}")
    return b"SUB %b %b %d\r\n" % (subj, _encode(queue, "queue group"), sid)


def encode_unsub(sid: int, max_msgs: int | None = None) -> bytes:
    """``UNSUB <sid> [max_msgs]\\r\\n``: unsubscribe now, or after ``max_msgs`` more messages.

    Raises:
        LocalProtocolError: a sid or max_msgs that is not a non-negative int.
    """
    _check_sid(sid)
    if max_msgs is None:
        return b"UNSUB %d\r\n" % sid
    if type(max_msgs) is not int or max_msgs < 0:
        raise LocalProtocolError(f"max_msgs must be a non-negative int, not {max_msgs!r}")
    return b"UNSUB %d %d\r\n" % (sid, max_msgs)


# bytes = an already encoded ``NATS/1.0`` block (the producer hot path builds its own).
PublishHeaders = Headers | Mapping[str, str] | bytes
Payload = bytes | bytearray | memoryview


def connect_fields(
    *, name: str | None, tls: bool, token: str | None, user: str | None, password: str | None
) -> dict[str, object]:
    """The fields of the CONNECT JSON (docs/protocol.md §1.2, §1.3); None leaves a field out.

    ``headers`` and ``no_responders`` are always on: headers carry JetStream's message ids and
    status replies, and a 503 is how a request to a subject nobody serves fails fast instead of
    timing out.
    """
    options: dict[str, object] = {
        # Verbose off: no +OK per command. Errors still come as -ERR, and the handshake PING's PONG
        # is the acknowledgement we need.
        "verbose": False,
        "pedantic": False,
        # Tells the server we expect TLS; the upgrade itself is negotiated after INFO
        # (docs/protocol.md §1.5).
        "tls_required": tls,
        "lang": "python",
        "version": __version__,
        "protocol": 1,
        "echo": True,
        "headers": True,
        "no_responders": True,
    }
    if name is not None:
        options["name"] = name
    if token is not None:
        options["auth_token"] = token
    if user is not None:
        options["user"] = user
        options["pass"] = password
    return options


def _too_large(size: int, max_payload: int) -> LocalProtocolError:
    return LocalProtocolError(
        f"message of {size} bytes exceeds the server's max_payload of {max_payload}"
    )


def encode_request(
    subject: str, payload: Payload, headers: PublishHeaders | None, reply: bytes, max_payload: int
) -> bytes:
    """PUB/HPUB with one of our own reply subjects: the hot path of every produce.

    The reply is built from our validated inbox prefix, so only the subject is checked (once
    per distinct subject, cached by ``subject_bytes``). Pre-encoded header bytes come from the
    produce path, which builds its block itself once per message; anything else goes through the
    checked header encoder.

    Raises:
        LocalProtocolError: bad subject, headers or payload type, or larger than max_payload.
    """
    data = payload if type(payload) is bytes else _payload_bytes(payload)
    block = (
        None
        if not headers
        else headers
        if isinstance(headers, bytes)
        else encode_header_block(headers)
    )
    return _frame(_pub_subject(subject), reply, block, data, max_payload)


def encode_publish(
    subject: str,
    payload: Payload,
    headers: PublishHeaders | None,
    reply: str | None,
    max_payload: int,
) -> bytes:
    """PUB/HPUB for a user-chosen subject and optional reply.

    Raises:
        LocalProtocolError: bad subject, reply, headers or payload, or larger than max_payload.
    """
    subj = _pub_subject(subject)
    rep = None if reply is None else _pub_subject(reply, "reply")
    block = None
    if headers:
        block = _header_block(
            headers if isinstance(headers, bytes) else encode_header_block(headers)
        )
    data = payload if type(payload) is bytes else _payload_bytes(payload)
    return _frame(subj, rep, block, data, max_payload)


def encode_reply_publish(reply: str, payload: bytes) -> bytes:
    """PUB to a reply subject the server gave us (a JetStream ack subject), unchecked.

    The parser only yields subjects free of whitespace, and JetStream never puts wildcards in
    them; they are all distinct, so neither the check nor the cache would pay.
    """
    return _frame(reply.encode("utf-8", "surrogateescape"), None, None, payload, -1)
