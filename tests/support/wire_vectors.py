"""Shared NATS wire vectors and a test-only "fake server" encoder.

Used by the unit tests, the Hypothesis properties and ``fuzz/make_corpus.py`` (which turns the
vectors into the atheris seed corpora), so every byte string here is exercised three ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from memphis_core.nats._frames import (
    OK_FRAME,
    PING_FRAME,
    PONG_FRAME,
    Err,
    Frame,
    Info,
    Msg,
    Replies,
)
from memphis_core.nats._headers import Headers

__all__ = [
    "HEADER_INVALID",
    "HEADER_VALID",
    "PARSER_INVALID",
    "PARSER_VALID",
    "encode_frame",
    "encode_frames",
    "server_err",
    "server_hmsg",
    "server_info",
    "server_msg",
]


# ---------------------------------------------------------------- the fake server


def server_msg(subject: str, sid: int, reply: str | None, payload: bytes) -> bytes:
    """``MSG`` exactly as nats-server writes it (single spaces)."""
    subj = subject.encode("utf-8", "surrogateescape")
    if reply is None:
        return b"MSG %b %d %d\r\n%b\r\n" % (subj, sid, len(payload), payload)
    rep = reply.encode("utf-8", "surrogateescape")
    return b"MSG %b %d %b %d\r\n%b\r\n" % (subj, sid, rep, len(payload), payload)


def server_hmsg(subject: str, sid: int, reply: str | None, block: bytes, payload: bytes) -> bytes:
    """``HMSG`` with an already encoded header block."""
    subj = subject.encode("utf-8", "surrogateescape")
    total = len(block) + len(payload)
    if reply is None:
        return b"HMSG %b %d %d %d\r\n%b%b\r\n" % (subj, sid, len(block), total, block, payload)
    rep = reply.encode("utf-8", "surrogateescape")
    return b"HMSG %b %d %b %d %d\r\n%b%b\r\n" % (subj, sid, rep, len(block), total, block, payload)


def server_info(fields: dict[str, object]) -> bytes:
    return b"INFO " + json.dumps(fields, separators=(",", ":")).encode() + b"\r\n"


def server_err(message: str) -> bytes:
    return b"-ERR '" + message.encode("utf-8", "surrogateescape") + b"'\r\n"


def encode_frame(frame: Frame) -> bytes:
    """Re-encode any frame the parser can return (the inverse of ``Parser.feed``)."""
    if isinstance(frame, Msg):
        block = frame.raw_headers
        if block is None:
            return server_msg(frame.subject, frame.sid, frame.reply, frame.payload)
        return server_hmsg(frame.subject, frame.sid, frame.reply, block, frame.payload)
    if isinstance(frame, Info):
        return server_info(frame.fields)
    if isinstance(frame, Err):
        return server_err(frame.message)
    if isinstance(frame, Replies):
        # Only a parser told the inbox makes these, and the frame does not repeat it.
        raise TypeError("a Replies frame is re-encoded with its inbox: not a parser vector")
    return {PING_FRAME: b"PING\r\n", PONG_FRAME: b"PONG\r\n", OK_FRAME: b"+OK\r\n"}[frame]


def encode_frames(frames: Iterable[Frame]) -> bytes:
    return b"".join(encode_frame(f) for f in frames)


# ---------------------------------------------------------------- parser vectors

_HB = b"NATS/1.0\r\n$memphis_connectionId: c0ffee\r\n$memphis_producedBy: web\r\n\r\n"
_H = Headers([("$memphis_connectionId", "c0ffee"), ("$memphis_producedBy", "web")])
_ACK = "$JS.ACK.orders$1.billing.1.42.42.1764241234567890123.0"

# (id, bytes, frames): every vector is a complete sequence of frames.
PARSER_VALID: list[tuple[str, bytes, list[Frame]]] = [
    ("ping", b"PING\r\n", [PING_FRAME]),
    ("pong", b"PONG\r\n", [PONG_FRAME]),
    ("ok", b"+OK\r\n", [OK_FRAME]),
    ("ping-lower", b"ping\r\n", [PING_FRAME]),
    ("pong-mixed-trailing-space", b"PoNg \t\r\n", [PONG_FRAME]),
    (
        "info",
        b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n',
        [Info({"server_id": "x", "max_payload": 1048576, "headers": True})],
    ),
    ("info-lower-tab", b"info\t{}\r\n", [Info({})]),
    ("info-spaces-in-json", b'INFO { "a" : [1, 2] }\r\n', [Info({"a": [1, 2]})]),
    ("err-quoted", b"-ERR 'Authorization Violation'\r\n", [Err("Authorization Violation")]),
    ("err-unquoted", b"-ERR Stale Connection\r\n", [Err("Stale Connection")]),
    ("err-empty", b"-ERR\r\n", [Err("")]),
    ("err-lone-quote", b"-ERR '\r\n", [Err("'")]),
    ("msg", b"MSG foo.bar 9 5\r\nhello\r\n", [Msg("foo.bar", 9, None, b"hello")]),
    ("msg-reply", b"MSG foo 1 _INBOX.abc.7 3\r\nabc\r\n", [Msg("foo", 1, "_INBOX.abc.7", b"abc")]),
    ("msg-empty-payload", b"MSG foo 1 0\r\n\r\n", [Msg("foo", 1, None, b"")]),
    (
        "msg-binary-payload",
        b"MSG a 2 6\r\n\r\n\x00\xff\r\n\r\n",
        [Msg("a", 2, None, b"\r\n\x00\xff\r\n")],
    ),
    ("msg-payload-looks-like-ops", b"MSG a 2 6\r\nPING\r\n\r\n", [Msg("a", 2, None, b"PING\r\n")]),
    ("msg-lower", b"msg foo 1 2\r\nhi\r\n", [Msg("foo", 1, None, b"hi")]),
    ("msg-tabs-and-spaces", b"MSG\tfoo  1 \t r  2\r\nhi\r\n", [Msg("foo", 1, "r", b"hi")]),
    ("msg-cr-separator", b"MSG foo\r1 2\r\nhi\r\n", [Msg("foo", 1, None, b"hi")]),
    ("msg-trailing-space", b"MSG foo 1 2 \r\nhi\r\n", [Msg("foo", 1, None, b"hi")]),
    ("msg-vt-in-subject", b"MSG a\x0bb 1 1\r\n\x0c\r\n", [Msg("a\x0bb", 1, None, b"\x0c")]),
    ("msg-utf8-subject", "MSG caf\u00e9 1 1\r\nx\r\n".encode(), [Msg("caf\u00e9", 1, None, b"x")]),
    ("msg-non-utf8-subject", b"MSG a\xff 1 1\r\nx\r\n", [Msg("a\udcff", 1, None, b"x")]),
    (
        "msg-jetstream",
        b"MSG orders$1.final 7 " + _ACK.encode() + b' 4\r\n{"a"\r\n',
        [Msg("orders$1.final", 7, _ACK, b'{"a"')],
    ),
    (
        "msg-big-sid",
        b"MSG a 18446744073709551616 0\r\n\r\n",
        [Msg("a", 18446744073709551616, None, b"")],
    ),
    (
        "hmsg",
        b"HMSG a 1 %d %d\r\n%bdata\r\n" % (len(_HB), len(_HB) + 4, _HB),
        [Msg("a", 1, None, b"data", _H)],
    ),
    (
        "hmsg-reply",
        b"HMSG a 1 r.x %d %d\r\n%bdata\r\n" % (len(_HB), len(_HB) + 4, _HB),
        [Msg("a", 1, "r.x", b"data", _H)],
    ),
    ("hmsg-lower", b"hmsg a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n", [Msg("a", 1, None, b"", Headers())]),
    (
        "hmsg-multi-value",
        b"HMSG a 1 32 33\r\nNATS/1.0\r\nK: v\r\nK: w\r\nk:  x \r\n\r\n!\r\n",
        [Msg("a", 1, None, b"!", Headers([("K", "v"), ("K", "w"), ("k", "x")]))],
    ),
    (
        "hmsg-503",
        b"HMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
        [Msg("_INBOX.x.1", 1, None, b"", Headers(), 503)],
    ),
    (
        "hmsg-408-description",
        b"HMSG _INBOX.x 2 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n",
        [Msg("_INBOX.x", 2, None, b"", Headers(), 408, "Request Timeout")],
    ),
    (
        "hmsg-100-heartbeat",
        b"HMSG hb 3 75 75\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n"
        b"Nats-Last-Stream: 0\r\n\r\n\r\n",
        [
            Msg(
                "hb",
                3,
                None,
                b"",
                Headers([("Nats-Last-Consumer", "0"), ("Nats-Last-Stream", "0")]),
                100,
                "Idle Heartbeat",
            )
        ],
    ),
    (
        "hmsg-404",
        b"HMSG i 4 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n",
        [Msg("i", 4, None, b"", Headers(), 404, "No Messages")],
    ),
    (
        "hmsg-409",
        b"HMSG i 4 47 47\r\nNATS/1.0 409 Exceeded MaxRequestBatch of 10\r\n\r\n\r\n",
        [Msg("i", 4, None, b"", Headers(), 409, "Exceeded MaxRequestBatch of 10")],
    ),
    # Only the status line is checked eagerly; the rest of the block is validated when
    # Msg.headers decodes it (found by fuzz_parser: both feed paths must use the same rule).
    (
        "hmsg-undecoded-bad-version",
        b"HMSG a 1 12 12\r\nNATS/0.0\r\n\r\n\r\n",
        [Msg("a", 1, None, b"", None, None, "", b"NATS/0.0\r\n\r\n")],
    ),
    (
        "sequence",
        b"INFO {}\r\nPING\r\nMSG a 1 1\r\nx\r\n+OK\r\nHMSG b 2 12 13\r\nNATS/1.0\r\n\r\ny\r\n"
        b"PONG\r\n-ERR 'Slow'\r\n",
        [
            Info({}),
            PING_FRAME,
            Msg("a", 1, None, b"x"),
            OK_FRAME,
            Msg("b", 2, None, b"y", Headers()),
            PONG_FRAME,
            Err("Slow"),
        ],
    ),
]

# (id, bytes): feeding them raises RemoteProtocolError (possibly after some valid frames).
PARSER_INVALID: list[tuple[str, bytes]] = [
    ("unknown-op", b"FOO bar\r\n"),
    ("empty-line", b"\r\n"),
    ("blank-line", b"  \r\n"),
    ("bare-lf", b"PING\n"),
    ("bare-lf-after-frame", b"PING\r\n\n"),
    ("leading-lf-then-crlf", b"\nPING\r\n"),
    ("ping-argument", b"PING x\r\n"),
    ("pong-suffix", b"PONGX\r\n"),
    ("ok-argument", b"+OK x\r\n"),
    ("info-no-separator", b"INFO{}\r\n"),
    ("info-bad-json", b"INFO {\r\n"),
    ("info-not-object", b"INFO [1]\r\n"),
    ("info-bad-utf8", b'INFO {"a":"\xff"}\r\n'),
    ("info-deep-json", b"INFO " + b"[" * 3000 + b"\r\n"),
    ("info-empty", b"INFO\r\n"),
    ("err-no-separator", b"-ERRx\r\n"),
    ("msg-too-few-args", b"MSG a 1\r\n"),
    ("msg-too-many-args", b"MSG a 1 r s 2\r\nhi\r\n"),
    ("msg-sid-not-digits", b"MSG a x 1\r\nx\r\n"),
    ("msg-sid-signed", b"MSG a +1 1\r\nx\r\n"),
    ("msg-size-not-digits", b"MSG a 1 x\r\n"),
    ("msg-size-underscore", b"MSG a 1 1_0\r\n0123456789\r\n"),
    ("msg-size-negative", b"MSG a 1 -1\r\n"),
    ("msg-size-unicode-digit", "MSG a 1 \u0661\r\nx\r\n".encode()),
    ("msg-payload-no-crlf", b"MSG a 1 5\r\nhelloXX"),
    ("msg-payload-cr-only", b"MSG a 1 5\r\nhello\rPING\r\n"),
    ("msg-payload-too-short", b"MSG a 1 5\r\nhell\r\nPING\r\n"),
    ("msg-straddles-lines", b"MSG foo\r\n1 5\r\nhello\r\n"),
    ("msg-lf-in-line", b"MSG foo\n1 5\r\nhello\r\n"),
    ("msg-op-only", b"MSG\r\n"),
    ("hmsg-too-few-args", b"HMSG a 1 12\r\n"),
    ("hmsg-too-many-args", b"HMSG a 1 r s 12 12\r\n"),
    ("hmsg-hdr-over-total", b"HMSG a 1 13 12\r\nNATS/1.0\r\n\r\n\r\n"),
    ("hmsg-hdr-not-digits", b"HMSG a 1 x 12\r\n"),
    ("hmsg-sid-not-digits", b"HMSG a s 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
    ("hmsg-bad-status", b"HMSG a 1 16 16\r\nNATS/1.0 5x3\r\n\r\n\r\n"),
    ("hmsg-short-status", b"HMSG a 1 15 15\r\nNATS/1.0 50\r\n\r\n\r\n"),
    ("hmsg-status-glued", b"HMSG a 1 17 17\r\nNATS/1.0 5031\r\n\r\n\r\n"),
    ("hmsg-bad-version", b"HMSG a 1 16 16\r\nHTTP/1.1 200\r\n\r\n\r\n"),
    ("hmsg-no-version", b"HMSG a 1 2 2\r\n\r\n\r\n"),
    ("hmsg-no-header-block", b"HMSG b 2 0 1\r\nx\r\n"),  # found by fuzz_parser
    ("hmsg-payload-no-crlf", b"HMSG a 1 12 12\r\nNATS/1.0\r\n\r\nXX"),
]

# ---------------------------------------------------------------- header-block vectors

# (id, block, status, description, pairs)
HEADER_VALID: list[tuple[str, bytes, int | None, str, list[tuple[str, str]]]] = [
    ("empty", b"NATS/1.0\r\n\r\n", None, "", []),
    ("one", b"NATS/1.0\r\nA: b\r\n\r\n", None, "", [("A", "b")]),
    ("no-space", b"NATS/1.0\r\nA:b\r\n\r\n", None, "", [("A", "b")]),
    ("trimmed", b"NATS/1.0\r\nA: \t b c \t\r\n\r\n", None, "", [("A", "b c")]),
    ("empty-value", b"NATS/1.0\r\nA:\r\n\r\n", None, "", [("A", "")]),
    ("colon-in-value", b"NATS/1.0\r\nA: b:c\r\n\r\n", None, "", [("A", "b:c")]),
    (
        "case-kept",
        b"NATS/1.0\r\nmsg-id: 1\r\nMsg-Id: 2\r\n\r\n",
        None,
        "",
        [("msg-id", "1"), ("Msg-Id", "2")],
    ),
    (
        "multi",
        b"NATS/1.0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n",
        None,
        "",
        [("A", "1"), ("B", "2"), ("A", "3")],
    ),
    ("memphis", _HB, None, "", _H.items()),
    (
        "utf8",
        "NATS/1.0\r\nk\u00e9y: v\u00e4l\r\n\r\n".encode(),
        None,
        "",
        [("k\u00e9y", "v\u00e4l")],
    ),
    ("non-utf8", b"NATS/1.0\r\nk: \xff\r\n\r\n", None, "", [("k", "\udcff")]),
    ("503", b"NATS/1.0 503\r\n\r\n", 503, "", []),
    ("503-text", b"NATS/1.0 503 No Responders\r\n\r\n", 503, "No Responders", []),
    ("status-tab", b"NATS/1.0\t408\tRequest Timeout \r\n\r\n", 408, "Request Timeout", []),
    (
        "100-headers",
        b"NATS/1.0 100 FlowControl Request\r\nNats-Consumer-Stalled: x\r\n\r\n",
        100,
        "FlowControl Request",
        [("Nats-Consumer-Stalled", "x")],
    ),
]

# (id, block): parse_header_block raises RemoteProtocolError.
HEADER_INVALID: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("no-terminator", b"NATS/1.0\r\n"),
    ("half-terminator", b"NATS/1.0\r\nA: b\r\n"),
    ("bad-version", b"NATS/2.0\r\n\r\n"),
    ("lowercase-version", b"nats/1.0\r\n\r\n"),
    ("version-suffix", b"NATS/1.00\r\n\r\n"),
    ("no-colon", b"NATS/1.0\r\nAb\r\n\r\n"),
    ("empty-key", b"NATS/1.0\r\n: b\r\n\r\n"),
    ("space-in-key", b"NATS/1.0\r\nA b: c\r\n\r\n"),
    ("space-before-colon", b"NATS/1.0\r\nA : c\r\n\r\n"),
    ("folded-line", b"NATS/1.0\r\nA: b\r\n c\r\n\r\n"),
    ("control-in-key", b"NATS/1.0\r\nA\x00: b\r\n\r\n"),
    ("del-in-key", b"NATS/1.0\r\nA\x7f: b\r\n\r\n"),
    ("bare-lf-in-value", b"NATS/1.0\r\nA: b\nc\r\n\r\n"),
    ("bare-cr-in-value", b"NATS/1.0\r\nA: b\rc\r\n\r\n"),
    ("blank-line-inside", b"NATS/1.0\r\n\r\nA: b\r\n\r\n"),
    ("status-letters", b"NATS/1.0 abc\r\n\r\n"),
    ("status-short", b"NATS/1.0 50\r\n\r\n"),
    ("status-long", b"NATS/1.0 5030\r\n\r\n"),
    ("status-leading-zero", b"NATS/1.0 099\r\n\r\n"),
    ("status-unicode-digits", "NATS/1.0 \u0665\u0660\u0663\r\n\r\n".encode()),
    ("status-lf-in-description", b"NATS/1.0 503 a\nb\r\n\r\n"),
]
