"""Client command encoders: exact bytes, and LocalProtocolError before anything is produced."""

from __future__ import annotations

import json

import pytest

from memphis_core import LocalProtocolError
from memphis_core.nats import _commands as cmd
from memphis_core.nats._headers import encode_header_block
from tests.support.compiled import pure_only


def test_constants() -> None:
    assert cmd.PING == b"PING\r\n"
    assert cmd.PONG == b"PONG\r\n"


def test_connect_is_compact_json() -> None:
    options = {
        "verbose": False,
        "pedantic": False,
        "name": "id::root",
        "headers": True,
        "auth_token": "memphis",
        "lang": "python3",
    }
    data = cmd.encode_connect(options)
    assert data.startswith(b"CONNECT {")
    assert data.endswith(b"}\r\n")
    assert b" " not in data[len(b"CONNECT ") :]
    assert json.loads(data[len(b"CONNECT ") : -2]) == options
    assert data.count(b"\r\n") == 1


def test_connect_escapes_non_ascii_and_line_breaks() -> None:
    data = cmd.encode_connect({"pass": "p\u00e4ss\r\nPING"})
    assert data.isascii()
    assert data.count(b"\r\n") == 1


@pytest.mark.parametrize("options", [{"x": object()}, {"x": float("nan")}, {1: {2, 3}}])
def test_connect_rejects_unserialisable(options: dict[object, object]) -> None:
    with pytest.raises(LocalProtocolError):
        cmd.encode_connect(options)  # type: ignore[arg-type]


def test_pub() -> None:
    assert cmd.encode_pub("foo.bar", b"hello") == b"PUB foo.bar 5\r\nhello\r\n"
    assert cmd.encode_pub("foo", b"", "_INBOX.a.1") == b"PUB foo _INBOX.a.1 0\r\n\r\n"
    assert cmd.encode_pub("$memphis_station_creations", b"{}") == (
        b"PUB $memphis_station_creations 2\r\n{}\r\n"
    )


@pytest.mark.parametrize("payload", [bytearray(b"abc"), memoryview(b"xabcx")[1:4]])
def test_pub_accepts_bytes_like(payload: bytearray | memoryview) -> None:
    assert cmd.encode_pub("s", payload) == b"PUB s 3\r\nabc\r\n"


def test_pub_counts_bytes_not_items() -> None:
    wide = memoryview(bytes(8)).cast("Q")  # one 8-byte item
    assert cmd.encode_pub("s", wide) == b"PUB s 8\r\n" + bytes(8) + b"\r\n"


@pytest.mark.parametrize("payload", ["text", 5, None, [1]])
def test_pub_rejects_non_bytes(payload: object) -> None:
    with pytest.raises(LocalProtocolError, match="bytes-like"):
        cmd.encode_pub("s", payload)  # type: ignore[arg-type]


def test_utf8_subject() -> None:
    assert cmd.encode_pub("caf\u00e9", b"") == "PUB caf\u00e9 0\r\n\r\n".encode()
    assert cmd.encode_pub("a\udcff", b"") == b"PUB a\xff 0\r\n\r\n"  # round-trips a received one


BAD_SUBJECTS = [
    "",
    " ",
    "a b",
    "a\tb",
    "a\r",
    "a\nb",
    "a\x00",
    "a\x7f",
    ".",
    "a.",
    ".a",
    "a..b",
    "\ud800",
    # wrong types: a compiled core refuses them at the call (tests/support/compiled.py)
    pytest.param(7, marks=pure_only),
    pytest.param(None, marks=pure_only),
    pytest.param(b"a", marks=pure_only),
]


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_invalid_subjects(subject: object) -> None:
    with pytest.raises(LocalProtocolError):
        cmd.encode_pub(subject, b"")  # type: ignore[arg-type]
    if subject is not None:  # a None reply means "no reply"
        with pytest.raises(LocalProtocolError):
            cmd.encode_pub("ok", b"", subject)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        cmd.encode_sub(subject, 1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        cmd.encode_hpub(subject, b"NATS/1.0\r\n\r\n", b"")  # type: ignore[arg-type]


@pytest.mark.parametrize("subject", ["*", ">", "a.*", "a.>", "*.b", "a.*.c"])
def test_wildcards_only_in_sub(subject: str) -> None:
    with pytest.raises(LocalProtocolError, match="wildcard"):
        cmd.encode_pub(subject, b"")
    with pytest.raises(LocalProtocolError, match="wildcard"):
        cmd.encode_pub("ok", b"", subject)
    with pytest.raises(LocalProtocolError, match="wildcard"):
        cmd.validate_subject(subject)
    assert cmd.encode_sub(subject, 3) == b"SUB %b 3\r\n" % subject.encode()
    cmd.validate_subject(subject, wildcards=True)


@pytest.mark.parametrize("subject", ["a*", "a>b", "*a.b", "$JS.API.>x"])
def test_wildcard_characters_inside_tokens_are_literal(subject: str) -> None:
    assert cmd.encode_pub(subject, b"") == b"PUB %b 0\r\n\r\n" % subject.encode()


@pytest.mark.parametrize("subject", [">.a", "a.>.b"])
def test_full_wildcard_must_be_last(subject: str) -> None:
    with pytest.raises(LocalProtocolError, match="last"):
        cmd.encode_sub(subject, 1)


def test_validate_subject_and_subject_bytes() -> None:
    cmd.validate_subject("orders$1.final")
    cmd.validate_subject("a.*.>", wildcards=True)
    assert cmd.subject_bytes("caf\u00e9.x") == "caf\u00e9.x".encode()
    with pytest.raises(LocalProtocolError):
        cmd.subject_bytes("a b")
    with pytest.raises(LocalProtocolError):
        cmd.validate_subject("a..b", wildcards=True)


def test_validated_subjects_are_cached_but_stay_validated() -> None:
    for _ in range(3):
        assert cmd.encode_pub("cached.subject", b"x") == b"PUB cached.subject 1\r\nx\r\n"
        with pytest.raises(LocalProtocolError):
            cmd.encode_pub("bad subject", b"x")


def test_subject_cache_is_bounded() -> None:
    for i in range(10_000):
        cmd.encode_pub(f"s.{i}", b"")
        cmd.encode_sub(f"s.{i}.*", i)
    assert len(cmd._pub_cache) <= cmd._CACHE_LIMIT
    assert len(cmd._sub_cache) <= cmd._CACHE_LIMIT


def test_hpub() -> None:
    block = encode_header_block({"k": "v"})
    assert len(block) == 18
    assert cmd.encode_hpub("s", block, b"data") == b"HPUB s 18 22\r\n" + block + b"data\r\n"
    assert cmd.encode_hpub("s", block, bytearray(b"data"), "r.1") == (
        b"HPUB s r.1 18 22\r\n" + block + b"data\r\n"
    )
    assert cmd.encode_hpub("s", bytearray(block), b"") == b"HPUB s 18 18\r\n" + block + b"\r\n"


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"NATS/1.0\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"NATS/1.0\r\nk: v\r\n",
        pytest.param("NATS/1.0\r\n\r\n", marks=pure_only),
    ],
)
def test_hpub_rejects_malformed_blocks(block: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        cmd.encode_hpub("s", block, b"")


def test_sub() -> None:
    assert cmd.encode_sub("foo.*", 1) == b"SUB foo.* 1\r\n"
    assert cmd.encode_sub("foo", 12, "workers") == b"SUB foo workers 12\r\n"
    assert cmd.encode_sub("_INBOX.abc.*", 0) == b"SUB _INBOX.abc.* 0\r\n"


@pytest.mark.parametrize("queue", ["", "a b", "a\r\n", "a\t", pytest.param(1, marks=pure_only)])
def test_sub_rejects_bad_queue(queue: object) -> None:
    with pytest.raises(LocalProtocolError, match="queue"):
        cmd.encode_sub("s", 1, queue)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sid", [-1, *(pytest.param(sid, marks=pure_only) for sid in (1.0, "1", None, True))]
)
def test_bad_sids(sid: object) -> None:
    with pytest.raises(LocalProtocolError, match="sid"):
        cmd.encode_sub("s", sid)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="sid"):
        cmd.encode_unsub(sid)  # type: ignore[arg-type]


def test_unsub() -> None:
    assert cmd.encode_unsub(5) == b"UNSUB 5\r\n"
    assert cmd.encode_unsub(5, 10) == b"UNSUB 5 10\r\n"
    assert cmd.encode_unsub(5, 0) == b"UNSUB 5 0\r\n"


@pytest.mark.parametrize(
    "max_msgs", [-1, *(pytest.param(m, marks=pure_only) for m in ("3", 2.5, True))]
)
def test_unsub_bad_max(max_msgs: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_msgs"):
        cmd.encode_unsub(1, max_msgs)  # type: ignore[arg-type]
