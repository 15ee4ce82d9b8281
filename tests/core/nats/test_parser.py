"""Parser: bytes in, frames out. Every vector is checked three ways (h11's ``tr()``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_core import LocalProtocolError, RemoteProtocolError
from memphis_core.nats._frames import (
    OK_FRAME,
    PING_FRAME,
    PONG_FRAME,
    Err,
    Frame,
    Info,
    Msg,
    Ok,
    Ping,
    Pong,
    Replies,
)
from memphis_core.nats._headers import Headers
from memphis_core.nats._parser import ParseError, Parser
from tests.support.compiled import pure_only
from tests.support.wire_vectors import PARSER_INVALID, PARSER_VALID, encode_frames

# Incomplete frames appended after a vector: they must stay buffered, and parse once completed.
TRAILERS: list[tuple[bytes, bytes, list[Frame]]] = [
    (b"PIN", b"G\r\n", [PING_FRAME]),
    (b"PING\r", b"\n", [PING_FRAME]),
    (b"MSG t 1 4\r\nab", b"cd\r\n", [Msg("t", 1, None, b"abcd")]),
    (b"MSG t 1 4\r\nabcd\r", b"\n", [Msg("t", 1, None, b"abcd")]),
    (b"HMSG t 2 r 12 13\r\nNATS/1", b".0\r\n\r\nz\r\n", [Msg("t", 2, "r", b"z", Headers())]),
]


def feed_bytewise(parser: Parser, data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    return frames


def tr(data: bytes, expected: list[Frame]) -> None:
    # (a) all at once
    parser = Parser()
    assert parser.feed(data) == expected
    assert parser.buffered == 0
    # (b) one byte at a time
    parser = Parser()
    assert feed_bytewise(parser, data) == expected
    assert parser.buffered == 0
    # (c) followed by the start of another frame, which stays buffered until completed
    for head, rest, more in TRAILERS:
        parser = Parser()
        assert parser.feed(data + head) == expected
        assert parser.buffered > 0
        assert parser.feed(rest) == more
        assert parser.buffered == 0


@pytest.mark.parametrize(
    ("data", "expected"), [v[1:] for v in PARSER_VALID], ids=[v[0] for v in PARSER_VALID]
)
def test_valid_vectors(data: bytes, expected: list[Frame]) -> None:
    tr(data, expected)


@pytest.mark.parametrize(
    ("data", "expected"), [v[1:] for v in PARSER_VALID], ids=[v[0] for v in PARSER_VALID]
)
def test_every_two_way_split(data: bytes, expected: list[Frame]) -> None:
    for cut in range(len(data) + 1):
        parser = Parser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected


@pytest.mark.parametrize(
    ("data", "expected"), [v[1:] for v in PARSER_VALID], ids=[v[0] for v in PARSER_VALID]
)
def test_reencoding_parses_to_the_same_frames(data: bytes, expected: list[Frame]) -> None:
    assert Parser().feed(encode_frames(expected)) == expected


def test_all_vectors_in_one_stream() -> None:
    data = b"".join(v[1] for v in PARSER_VALID)
    expected = [f for v in PARSER_VALID for f in v[2]]
    tr(data, expected)


def feed_until_error(parser: Parser, pieces: list[bytes]) -> list[Frame]:
    """Feed until ParseError; return every frame handed out, including the error's."""
    frames: list[Frame] = []
    try:
        for piece in pieces:
            frames += parser.feed(piece)
    except ParseError as exc:
        return frames + exc.frames
    pytest.fail("no ParseError")


@pytest.mark.parametrize("data", [v[1] for v in PARSER_INVALID], ids=[v[0] for v in PARSER_INVALID])
def test_invalid_vectors(data: bytes) -> None:
    # whole
    parser = Parser()
    whole = feed_until_error(parser, [data])
    # poisoned: every later call raises too, chained to the original error
    with pytest.raises(RemoteProtocolError) as info:
        parser.feed(b"PING\r\n")
    assert isinstance(info.value.__cause__, RemoteProtocolError)
    assert info.value.frames == []  # type: ignore[attr-defined]
    # byte by byte: fails too, after handing out the same frames
    parser = Parser()
    assert feed_until_error(parser, [data[i : i + 1] for i in range(len(data))]) == whole
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"")


def test_frames_before_an_error_travel_with_it() -> None:
    parser = Parser()
    assert parser.feed(b"PING\r\n") == [PING_FRAME]
    with pytest.raises(ParseError) as info:
        parser.feed(b"PONG\r\nMSG a 1 1\r\nx\r\nBOGUS\r\nPING\r\n")
    assert info.value.frames == [PONG_FRAME, Msg("a", 1, None, b"x")]
    assert isinstance(info.value, RemoteProtocolError)


# ---------------------------------------------------------------- buffering


def test_buffered_counts_held_back_bytes() -> None:
    parser = Parser()
    assert parser.feed(b"") == []
    assert parser.buffered == 0
    assert parser.feed(b"PI") == []
    assert parser.buffered == 2
    assert parser.feed(b"NG\r\nMSG a 1 5\r\nhe") == [PING_FRAME]
    assert parser.buffered == 2  # the control line is parsed; two payload bytes are held
    assert parser.feed(b"llo") == []
    assert parser.buffered == 5
    assert parser.feed(b"\r\n") == [Msg("a", 1, None, b"hello")]
    assert parser.buffered == 0


def test_payload_starting_with_lf_after_a_split() -> None:
    parser = Parser()
    assert parser.feed(b"MSG a 1 3\r\n") == []
    assert parser.feed(b"\nbc\r\nPING\r\n") == [Msg("a", 1, None, b"\nbc"), PING_FRAME]


def test_large_payload_in_small_reads() -> None:
    payload = bytes(range(256)) * 400
    data = b"MSG big 3 r %d\r\n%b\r\nPONG\r\n" % (len(payload), payload)
    parser = Parser()
    frames: list[Frame] = []
    for i in range(0, len(data), 1000):
        frames += parser.feed(data[i : i + 1000])
        assert parser.buffered <= len(payload) + 2
    assert frames == [Msg("big", 3, "r", payload), PONG_FRAME]


def test_accepts_bytearray_and_memoryview() -> None:
    parser = Parser()
    assert parser.feed(bytearray(b"PING\r\nMSG a 1 1\r\n")) == [PING_FRAME]
    assert parser.feed(memoryview(b"xx\r\nPONG\r\n")[1:]) == [Msg("a", 1, None, b"x"), PONG_FRAME]


def test_payload_is_immutable_bytes() -> None:
    (msg,) = Parser().feed(bytearray(b"MSG a 1 2\r\nhi\r\n"))
    assert type(msg) is Msg
    assert type(msg.payload) is bytes


def test_many_distinct_sids() -> None:
    data = b"".join(b"MSG s %d 1\r\nx\r\n" % sid for sid in range(3000))
    frames = Parser().feed(data)
    assert [f.sid for f in frames if isinstance(f, Msg)] == list(range(3000))


def test_singletons() -> None:
    frames = Parser().feed(b"PING\r\nPONG\r\n+OK\r\nPING\r\n")
    assert frames[0] is PING_FRAME
    assert frames[3] is PING_FRAME
    assert frames[1] is PONG_FRAME
    assert frames[2] is OK_FRAME


# ---------------------------------------------------------------- limits


def test_control_line_limit_terminated() -> None:
    ok = b"-ERR '" + b"x" * 10 + b"'\r\n"  # 17 bytes of line content
    assert Parser(max_control_line=17).feed(ok) == [Err("x" * 10)]
    with pytest.raises(RemoteProtocolError, match="longer than the limit"):
        Parser(max_control_line=16).feed(ok)


def test_control_line_limit_unterminated() -> None:
    parser = Parser(max_control_line=16)
    assert parser.feed(b"x" * 16) == []
    with pytest.raises(RemoteProtocolError, match="longer than the limit"):
        parser.feed(b"x")


def test_control_line_limit_unterminated_in_one_read() -> None:
    with pytest.raises(RemoteProtocolError, match="longer than the limit"):
        Parser(max_control_line=16).feed(b"PING\r\n" + b"x" * 17)
    parser = Parser(max_control_line=16)
    assert parser.feed(b"PING\r\n" + b"x" * 16 + b"\r") == [PING_FRAME]
    assert parser.buffered == 17
    parser = Parser(max_control_line=16, max_info_line=64)
    assert parser.feed(b"PING\r\nINFO {" + b" " * 50) == [PING_FRAME]
    assert parser.feed(b"}\r\n") == [Info({})]


def test_control_line_limit_allows_the_cr_of_a_split_crlf() -> None:
    parser = Parser(max_control_line=16)
    assert parser.feed(b"-ERR '012345678'") == []  # 16 bytes
    assert parser.feed(b"\r") == []  # the CR is not line content
    assert parser.feed(b"\n") == [Err("012345678")]


def test_control_line_limit_trickled() -> None:
    parser = Parser(max_control_line=16)
    with pytest.raises(RemoteProtocolError):
        feed_bytewise(parser, b"y" * 100)
    assert parser.buffered == 17


def test_info_line_may_exceed_the_control_line_limit() -> None:
    line = b'INFO {"k":"' + b"v" * 40 + b'"}\r\n'
    content = len(line) - 2
    expected = [Info({"k": "v" * 40})]
    assert Parser(max_control_line=16, max_info_line=content).feed(line) == expected
    assert feed_bytewise(Parser(max_control_line=16, max_info_line=content), line) == expected
    with pytest.raises(RemoteProtocolError):
        Parser(max_control_line=16, max_info_line=content - 1).feed(line)
    with pytest.raises(RemoteProtocolError):
        feed_bytewise(Parser(max_control_line=16, max_info_line=content - 1), line)


def test_info_limit_only_applies_to_info() -> None:
    with pytest.raises(RemoteProtocolError):
        Parser(max_control_line=16, max_info_line=1000).feed(b"-ERR " + b"x" * 20 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        feed_bytewise(Parser(max_control_line=16, max_info_line=1000), b" INFO " + b"x" * 20)


def test_max_payload() -> None:
    assert Parser(max_payload=5).feed(b"MSG a 1 5\r\nhello\r\n") == [Msg("a", 1, None, b"hello")]
    parser = Parser(max_payload=5)
    with pytest.raises(RemoteProtocolError, match="max_payload"):
        parser.feed(b"MSG a 1 6\r\n")  # refused before any payload byte arrives
    with pytest.raises(RemoteProtocolError, match="max_payload"):
        Parser(max_payload=12).feed(b"HMSG a 1 12 13\r\n")


def test_max_payload_is_settable() -> None:
    parser = Parser(max_payload=0)
    assert parser.max_payload == 0
    parser.max_payload = 6
    assert parser.feed(b"MSG a 1 6\r\nhello!\r\n") == [Msg("a", 1, None, b"hello!")]
    with pytest.raises(LocalProtocolError):
        parser.max_payload = -1


@pure_only
def test_max_payload_of_the_wrong_type() -> None:
    parser = Parser(max_payload=0)
    with pytest.raises(LocalProtocolError):
        parser.max_payload = "7"  # type: ignore[assignment]


def test_max_header_size() -> None:
    data = b"HMSG a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    assert Parser(max_header_size=16).feed(data) == [Msg("a", 1, None, b"", Headers())]
    with pytest.raises(RemoteProtocolError, match="header size"):
        Parser(max_header_size=16).feed(b"HMSG a 1 17 20\r\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_control_line": 15},
        {"max_header_size": 0},
        pytest.param({"max_info_line": 1.5}, marks=pure_only),
        {"max_payload": -1},
        pytest.param({"max_payload": None}, marks=pure_only),
    ],
)
def test_constructor_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Parser(**kwargs)  # type: ignore[arg-type]


def test_feed_rejects_str() -> None:
    with pytest.raises(TypeError):
        Parser().feed("PING\r\n")  # type: ignore[arg-type]


# ---------------------------------------------------------------- lazy headers


def test_header_lines_are_decoded_on_first_access() -> None:
    block = b"NATS/1.0\r\nA: 1\r\n\r\n"
    (msg,) = Parser().feed(b"HMSG s 1 %d %d\r\n%bp\r\n" % (len(block), len(block) + 1, block))
    assert isinstance(msg, Msg)
    assert msg.status is None
    assert msg.raw_headers == block
    assert msg.headers == Headers({"A": "1"})
    assert msg.headers is msg.headers  # decoded once
    assert msg.raw_headers == block  # still byte-exact


def test_malformed_header_lines_raise_on_access() -> None:
    block = b"NATS/1.0\r\nno colon\r\n\r\n"
    data = b"HMSG s 1 %d %d\r\n%b\r\nPING\r\n" % (len(block), len(block), block)
    msg, ping = Parser().feed(data)
    assert ping is PING_FRAME
    assert isinstance(msg, Msg)
    assert msg.status is None
    with pytest.raises(RemoteProtocolError):
        _ = msg.headers


def test_status_line_errors_poison_the_parser() -> None:
    parser = Parser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"HMSG s 1 16 16\r\nNATS/1.0 abc\r\n\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"PING\r\n")


# ---------------------------------------------------------------- frame objects


def test_frame_equality_and_repr() -> None:
    assert Msg("a", 1, None, b"x") == Msg("a", 1, None, b"x")
    assert Msg("a", 1, None, b"x") != Msg("a", 2, None, b"x")
    assert Msg("a", 1, None, b"x") != Msg("a", 1, None, b"x", Headers())
    assert Msg("a", 1, None, b"", Headers(), 503) != Msg("a", 1, None, b"", Headers())
    assert Msg("a", 1, None, b"x") != "a"
    assert repr(Msg("a", 1, "r", b"x")) == "Msg('a', 1, 'r', b'x')"
    assert "status=503" in repr(Msg("a", 1, None, b"", Headers(), 503, "No Responders"))
    undecoded = Msg("a", 1, None, b"", raw_headers=b"NATS/1.0\r\nbad\r\n\r\n")
    assert "raw_headers=b'NATS/1.0" in repr(undecoded)  # repr never decodes (or raises)
    assert Info({"a": 1}) == Info({"a": 1})
    assert Info({"a": 1}) != Info({"a": 2})
    assert Info({}) != Err("")
    assert repr(Info({})) == "Info({})"
    assert Err("x") == Err("x")
    assert Err("x") != Err("y")
    assert Err("x") != Info({})
    assert repr(Err("x")) == "Err('x')"
    assert Ping() == PING_FRAME
    assert Pong() != PING_FRAME
    assert Ok() == OK_FRAME
    assert repr(PONG_FRAME) == "Pong()"
    assert hash(Ping()) == hash(PING_FRAME)


def test_msg_headers_setter_and_raw_headers_of_a_built_message() -> None:
    msg = Msg("a", 1, None, b"")
    assert msg.headers is None
    assert msg.raw_headers is None
    msg.headers = Headers({"k": "v"})
    assert msg.raw_headers == b"NATS/1.0\r\nk: v\r\n\r\n"
    built = Msg("a", 1, None, b"", Headers(), 503, "No Responders")
    assert built.raw_headers == b"NATS/1.0 503 No Responders\r\n\r\n"


def test_msg_is_matchable() -> None:
    (frame,) = Parser().feed(b"MSG a 1 r 1\r\nx\r\n")
    match frame:
        case Msg(subject, sid, reply, payload):
            assert (subject, sid, reply, payload) == ("a", 1, "r", b"x")
        case _:  # pragma: no cover
            pytest.fail("not a Msg")


# ---- plain replies on the shared inbox, recognised in bulk (Parser.expect_replies) ----------

INBOX_PREFIX = b"_INBOX.abc."


def reply_parser(**limits: int) -> Parser:
    parser = Parser(**limits)
    parser.expect_replies(INBOX_PREFIX, 1)
    return parser


def flat(frames: list[Frame]) -> list[object]:
    """Frames with each Replies run spelled out reply by reply: what a split may not change."""
    out: list[object] = []
    for frame in frames:
        if isinstance(frame, Replies):
            out += [("reply", t, p) for t, p in zip(frame.tokens, frame.payloads, strict=True)]
        else:
            out.append(frame)
    return out


def test_a_read_full_of_replies_is_one_frame_without_a_msg_each() -> None:
    acks = [b'{"stream":"s$1","seq":%d}' % i for i in range(1, 4)]
    data = b"".join(
        b"MSG _INBOX.abc.%d 1 %d\r\n%b\r\n" % (7 + i, len(a), a) for i, a in enumerate(acks)
    )
    assert reply_parser().feed(data) == [Replies([7, 8, 9], acks)]
    # Without expect_replies the same bytes are plain messages, as for any NATS client.
    assert Parser().feed(data)[0] == Msg("_INBOX.abc.7", 1, None, acks[0])


# What is not a plain reply on the inbox in nats-server's own spelling takes the general path:
# another sid, a reply subject, headers (a 503), a deeper inbox subject, a doubled space.
NOT_REPLIES = [
    (b"MSG _INBOX.abc.5 2 1\r\nx\r\n", Msg("_INBOX.abc.5", 2, None, b"x")),
    (b"MSG _INBOX.abc.5 1 r 1\r\nx\r\n", Msg("_INBOX.abc.5", 1, "r", b"x")),
    (b"MSG _INBOX.abc.p.5 1 1\r\nx\r\n", Msg("_INBOX.abc.p.5", 1, None, b"x")),
    (b"MSG  _INBOX.abc.5 1 1\r\nx\r\n", Msg("_INBOX.abc.5", 1, None, b"x")),
    (b"msg _INBOX.abc.5 1 1\r\nx\r\n", Msg("_INBOX.abc.5", 1, None, b"x")),
    # A token spelled with a leading zero is no token of ours: a Replies frame could not give
    # the subject back as it came.
    (b"MSG _INBOX.abc.05 1 1\r\nx\r\n", Msg("_INBOX.abc.05", 1, None, b"x")),
    (b"MSG _INBOX.abc.0 1 1\r\nx\r\n", Msg("_INBOX.abc.0", 1, None, b"x")),
    (
        b"HMSG _INBOX.abc.5 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
        Msg("_INBOX.abc.5", 1, None, b"", None, 503, "", b"NATS/1.0 503\r\n\r\n"),
    ),
]


@pytest.mark.parametrize(("data", "expected"), NOT_REPLIES)
def test_what_is_not_a_plain_reply_is_a_msg(data: bytes, expected: Msg) -> None:
    assert reply_parser().feed(data) == [expected]


@pytest.mark.parametrize(
    "data",
    [
        b"MSG _INBOX.abc.5 1 3\r\nabcde\r\n",  # the payload is longer than its size says
        b"MSG _INBOX.abc.5 1 99999999\r\n",  # over max_payload: refused before it is buffered
    ],
)
def test_a_broken_reply_is_refused_as_on_the_general_path(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        reply_parser().feed(data)


@given(
    kinds=st.lists(st.sampled_from(["ack", "ping", "other", "status", "long"]), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
)
def test_replies_come_out_the_same_however_the_reads_cut_them(
    kinds: list[str], cuts: list[int]
) -> None:
    pieces = {
        "ack": lambda i: b'MSG _INBOX.abc.%d 1 27\r\n{"stream":"s$1","seq":%04d}\r\n' % (i, i),
        "ping": lambda i: b"PING\r\n",
        "other": lambda i: b"MSG orders$1.final 3 2\r\nhi\r\n",
        "status": lambda i: b"HMSG _INBOX.abc.%d 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n" % i,
        "long": lambda i: b"MSG _INBOX.abc.%d 1 600\r\n%b\r\n" % (i, b"x" * 600),
    }
    data = b"".join(pieces[kind](i) for i, kind in enumerate(kinds, 1))  # tokens start at 1
    whole = flat(reply_parser().feed(data))
    assert len(whole) == len(kinds)
    assert [w[0] if isinstance(w, tuple) else None for w in whole] == [
        "reply" if kind in {"ack", "long"} else None for kind in kinds
    ]
    parser = reply_parser()
    frames: list[Frame] = []
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        frames += parser.feed(data[start:cut])
        start = cut
    frames += parser.feed(data[start:])
    assert flat(frames) == whole
    assert parser.buffered == 0


# Traffic around and between replies: each kind as nats-server could write it, with ``%d`` a
# token. Replies (sid 1, no headers, no reply subject) and everything that only looks like one.
MIXED_TRAFFIC = {
    "reply": b'MSG _INBOX.abc.%d 1 24\r\n{"stream":"s$1","seq":1}\r\n',
    "empty reply": b"MSG _INBOX.abc.%d 1 0\r\n\r\n",
    "reply holding a frame": b"MSG _INBOX.abc.%d 1 25\r\nx\r\nMSG _INBOX.abc.9 1 1\r\n\r\n",
    "long reply": b"MSG _INBOX.abc.%d 1 300\r\n" + b"y" * 300 + b"\r\n",
    "other sid": b"MSG _INBOX.abc.%d 2 1\r\nx\r\n",
    "reply subject": b"MSG _INBOX.abc.%d 1 r 1\r\nx\r\n",
    "longer prefix": b"MSG _INBOX.abcd.%d 1 1\r\nx\r\n",
    "shorter prefix": b"MSG _INBOX.ab.%d 1 1\r\nx\r\n",
    "deeper subject": b"MSG _INBOX.abc.%d.7 1 1\r\nx\r\n",
    "pull inbox": b"MSG _INBOX.abc.p.%d 1 1\r\nx\r\n",
    "503": b"HMSG _INBOX.abc.%d 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
    "pulled": b"HMSG orders$1.final 3 $JS.ACK.x 12 13\r\nNATS/1.0\r\n\r\nz\r\n",
    "ping": b"PING\r\n",
    "pong": b"PONG\r\n",
    "ok": b"+OK\r\n",
    "err": b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n",
    "info": b'INFO {"max_payload":1048576}\r\n',
    "tab": b"MSG _INBOX.abc.%d\t1 1\r\nx\r\n",
    "leading zero": b"MSG _INBOX.abc.0%d 1 1\r\nx\r\n",
}
# Broken frames: each must fail as it fails on the general path, after the same frames.
BROKEN_TRAFFIC = {
    "payload too long": b"MSG _INBOX.abc.%d 1 3\r\nabcd\r\n",
    "over max_payload": b"MSG _INBOX.abc.%d 1 5000\r\n",
    "bare LF": b"MSG _INBOX.abc.%d 1 1\nx\r\n",
    "no op": b"_INBOX.abc.%d 1 1\r\nx\r\n",
}


def spelled(frames: list[Frame]) -> list[Frame]:
    """Each reply of a Replies run as the Msg a parser without ``expect_replies`` makes of it."""
    out: list[Frame] = []
    for frame in frames:
        if isinstance(frame, Replies):
            out += [
                Msg(f"{INBOX_PREFIX.decode()}{token}", 1, None, payload)
                for token, payload in zip(frame.tokens, frame.payloads, strict=True)
            ]
        else:
            out.append(frame)
    return out


def read(parser: Parser, pieces: list[bytes]) -> tuple[list[Frame], str | None]:
    """Every frame ``pieces`` give (Replies spelled out), and the error's text if one ends it."""
    frames: list[Frame] = []
    for piece in pieces:
        try:
            frames += parser.feed(piece)
        except ParseError as exc:
            return spelled(frames + exc.frames), str(exc)
    return spelled(frames), None


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(sorted(MIXED_TRAFFIC)), max_size=10),
    broken=st.none() | st.sampled_from(sorted(BROKEN_TRAFFIC)),
    tokens=st.lists(st.integers(min_value=0, max_value=10**19), min_size=11, max_size=11),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
    max_control_line=st.sampled_from([32, 4096]),
)
def test_replies_read_in_bulk_are_exactly_what_the_general_path_reads(
    kinds: list[str],
    broken: str | None,
    tokens: list[int],
    cuts: list[int],
    max_control_line: int,
) -> None:
    # The bulk path may only change how replies are carried: spelled out, the frames (PING, INFO,
    # -ERR, ... between replies, in order), the error and its text are the general path's, for
    # the same reads, however they cut the bytes; and the same frames as one read of them all.
    frames = [MIXED_TRAFFIC[kind] for kind in kinds]
    if broken is not None:
        frames.insert(len(frames) // 2, BROKEN_TRAFFIC[broken])
    data = b"".join(f % t if b"%d" in f else f for f, t in zip(frames, tokens, strict=False))
    points = sorted({c for c in cuts if c <= len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    limits = {"max_payload": 4096, "max_control_line": max_control_line}

    bulk = reply_parser(**limits)
    got = read(bulk, pieces)
    assert got == read(Parser(**limits), pieces)
    one_read, error = read(Parser(**limits), [data])
    assert got[0] == one_read
    assert (got[1] is None) == (error is None)
    if error is None:
        assert bulk.buffered == 0
