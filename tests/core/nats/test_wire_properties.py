"""Hypothesis properties of the wire layer: round trips, split invariance, bounded buffers,
and "frames or RemoteProtocolError, nothing else" for arbitrary input."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memphis_core import RemoteProtocolError
from memphis_core.nats._frames import OK_FRAME, PING_FRAME, PONG_FRAME, Err, Frame, Info, Msg
from memphis_core.nats._headers import Headers, encode_header_block, parse_header_block
from memphis_core.nats._parser import ParseError, Parser
from tests.support.wire_vectors import PARSER_INVALID, PARSER_VALID, encode_frames

# ---------------------------------------------------------------- strategies

# nats-server delivers any subject bytes except the argument separators; we decode them with
# surrogateescape, so generate bytes and derive the expected str.
_subject_bytes = (
    st.binary(min_size=1, max_size=24).map(lambda b: b.translate(None, b" \t\r\n")).filter(bool)
)
subjects = _subject_bytes.map(lambda b: b.decode("utf-8", "surrogateescape"))
sids = st.integers(min_value=0, max_value=2**64)
payloads = st.binary(max_size=200)

_key_chars = st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=":\x7f"
)
header_keys = st.text(_key_chars, min_size=1, max_size=12)
# Values are trimmed of spaces/tabs by the parser, so generate them trimmed.
header_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
).map(lambda v: v.strip(" \t"))
header_pairs = st.lists(st.tuples(header_keys, header_values), max_size=6)
statuses = st.one_of(
    st.none(),
    st.tuples(
        st.integers(100, 999),
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
        ).map(lambda d: d.strip(" \t")),
    ),
)


@st.composite
def msgs(draw: st.DrawFn) -> Msg:
    subject = draw(subjects)
    sid = draw(sids)
    reply = draw(st.one_of(st.none(), subjects))
    payload = draw(payloads)
    if not draw(st.booleans()):
        return Msg(subject, sid, reply, payload)
    headers = Headers(draw(header_pairs))
    status = draw(statuses)
    if status is None:
        return Msg(subject, sid, reply, payload, headers)
    return Msg(subject, sid, reply, payload, headers, status[0], status[1])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
infos = st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(Info)
errs = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
).map(Err)
frames_st = st.lists(
    st.one_of(msgs(), infos, errs, st.sampled_from([PING_FRAME, PONG_FRAME, OK_FRAME])),
    max_size=12,
)


def cut_points(data: st.DataObject, length: int) -> list[int]:
    cuts = data.draw(st.lists(st.integers(0, length), max_size=12))
    return sorted(set(cuts))


def feed_in_pieces(parser: Parser, blob: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    start = 0
    for cut in [*cuts, len(blob)]:
        frames += parser.feed(blob[start:cut])
        start = cut
    return frames


def outcome(blob: bytes, cuts: list[int]) -> tuple[list[Frame], int | None]:
    """Every frame handed out, and the held-back bytes (None if feed raised ParseError)."""
    parser = Parser(max_payload=1 << 20)
    frames: list[Frame] = []
    start = 0
    for cut in [*cuts, len(blob)]:
        try:
            frames += parser.feed(blob[start:cut])
        except ParseError as exc:
            return frames + exc.frames, None
        start = cut
    return frames, parser.buffered


# ---------------------------------------------------------------- properties


@given(frames_st)
def test_round_trip(frames: list[Frame]) -> None:
    parser = Parser(max_payload=1 << 20)
    assert parser.feed(encode_frames(frames)) == frames
    assert parser.buffered == 0


@given(frames_st, st.data())
def test_split_invariance(frames: list[Frame], data: st.DataObject) -> None:
    blob = encode_frames(frames)
    parser = Parser(max_payload=1 << 20)
    assert feed_in_pieces(parser, blob, cut_points(data, len(blob))) == frames
    assert parser.buffered == 0


@given(frames_st)
def test_byte_by_byte(frames: list[Frame]) -> None:
    blob = encode_frames(frames)
    assert outcome(blob, list(range(len(blob)))) == (frames, 0)


@given(frames_st, st.integers(1, 40))
def test_prefix_stays_buffered(frames: list[Frame], drop: int) -> None:
    # Cutting the stream short returns a prefix of the frames and holds the rest back.
    blob = encode_frames(frames)
    head = blob[: max(0, len(blob) - drop)]
    parser = Parser(max_payload=1 << 20)
    got = parser.feed(head)
    assert got == frames[: len(got)]
    assert parser.feed(blob[len(head) :]) == frames[len(got) :]


_NOISE = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([v[1] for v in PARSER_VALID] + [v[1] for v in PARSER_INVALID]),
    st.sampled_from(
        [
            b"MSG ",
            b"HMSG ",
            b"INFO ",
            b"PING",
            b"\r\n",
            b"\r",
            b"\n",
            b" ",
            b"\t",
            b"-ERR '",
            b"+OK",
            b"NATS/1.0",
            b"1",
            b"12",
            b"a.b",
            b"\x0b",
        ]
    ),
)
arbitrary_streams = st.lists(_NOISE, max_size=10).map(b"".join)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_streams, st.data())
def test_arbitrary_bytes_give_frames_or_remote_protocol_error(
    blob: bytes, data: st.DataObject
) -> None:
    # Nothing but RemoteProtocolError may escape (outcome() lets anything else through), and
    # the result does not depend on how the stream was cut.
    whole = outcome(blob, [])
    assert outcome(blob, cut_points(data, len(blob))) == whole
    assert outcome(blob, list(range(len(blob)))) == whole
    frames, _ = whole
    # Whatever was accepted re-encodes to a stream that parses to the same frames.
    assert outcome(encode_frames(frames), []) == (frames, 0)
    for frame in frames:
        if isinstance(frame, Msg):
            with contextlib.suppress(RemoteProtocolError):  # lazily decoded: RPE or a value
                frame.headers  # noqa: B018


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_streams, st.data())
def test_buffer_stays_bounded(blob: bytes, data: st.DataObject) -> None:
    limits = {"max_control_line": 24, "max_info_line": 40, "max_payload": 32, "max_header_size": 20}
    bound = max(limits["max_info_line"], limits["max_payload"]) + 2
    parser = Parser(**limits)
    start = 0
    for cut in [*cut_points(data, len(blob)), len(blob)]:
        try:
            parser.feed(blob[start:cut])
        except RemoteProtocolError:
            return
        start = cut
        assert parser.buffered <= bound


@given(header_pairs, statuses)
def test_header_block_round_trip(
    pairs: list[tuple[str, str]], status: tuple[int, str] | None
) -> None:
    headers = Headers(pairs)
    if status is None:
        block = encode_header_block(headers)
        assert parse_header_block(block) == (None, "", headers)
    else:
        block = encode_header_block(headers, status=status[0], description=status[1])
        assert parse_header_block(block) == (status[0], status[1], headers)
    assert parse_header_block(block)[2].items() == pairs


@given(st.binary(max_size=80))
def test_header_block_arbitrary_bytes(block: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_header_block(b"NATS/1.0" + block)
    with contextlib.suppress(RemoteProtocolError):
        parse_header_block(block)
