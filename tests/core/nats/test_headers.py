"""Headers collection and the NATS/1.0 header block (encode and parse)."""

from __future__ import annotations

import pytest

from memphis_core import LocalProtocolError, RemoteProtocolError
from memphis_core.nats._headers import (
    Headers,
    encode_header_block,
    parse_header_block,
    parse_status_line,
)
from tests.support.compiled import pure_only
from tests.support.wire_vectors import HEADER_INVALID, HEADER_VALID

# ---------------------------------------------------------------- Headers


def test_empty() -> None:
    headers = Headers()
    assert len(headers) == 0
    assert list(headers) == []
    assert headers.items() == []
    assert headers.get("a") is None
    assert headers.get("a", "d") == "d"
    assert headers.get_all("a") == []
    assert "a" not in headers
    with pytest.raises(KeyError):
        headers["a"]


def test_multi_valued_case_preserving_ordered() -> None:
    headers = Headers([("B", "1"), ("a", "2"), ("B", "3")])
    headers.add("A", "4")
    assert list(headers) == ["B", "a", "A"]
    assert len(headers) == 3
    assert headers.items() == [("B", "1"), ("a", "2"), ("B", "3"), ("A", "4")]
    assert headers["B"] == "1"
    assert headers.get("B") == "1"
    assert headers.get_all("B") == ["1", "3"]
    assert headers["a"] == "2"
    assert headers["A"] == "4"
    assert "b" not in headers  # lookups are case-sensitive
    assert "B" in headers
    assert 1 not in headers


def test_construct_from_mapping_and_headers() -> None:
    assert Headers({"k": "v", "x": "y"}).items() == [("k", "v"), ("x", "y")]
    original = Headers([("k", "1"), ("k", "2")])
    assert Headers(original).items() == [("k", "1"), ("k", "2")]


def test_items_and_copy_are_independent() -> None:
    headers = Headers({"k": "v"})
    items = headers.items()
    items.append(("x", "y"))
    assert headers.items() == [("k", "v")]
    copy = headers.copy()
    copy.add("k", "w")
    assert headers.get_all("k") == ["v"]
    assert copy.get_all("k") == ["v", "w"]


def test_equality() -> None:
    assert Headers([("a", "1"), ("b", "2")]) == Headers([("b", "2"), ("a", "1")])
    assert Headers([("a", "1"), ("a", "2")]) != Headers([("a", "2"), ("a", "1")])
    assert Headers([("a", "1"), ("a", "1")]) != Headers([("a", "1")])
    assert Headers({"a": "1"}) == {"a": "1"}
    assert Headers({"a": "1"}) != {"a": "2"}
    assert Headers([("a", "1"), ("a", "2")]) != {"a": "1"}
    assert Headers() != [("a", "1")]
    assert Headers() != 0


def test_unhashable_and_repr() -> None:
    with pytest.raises(TypeError):
        hash(Headers())
    assert repr(Headers([("a", "1")])) == "Headers([('a', '1')])"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a b",
        "a:b",
        "a\tb",
        "a\r",
        "a\n",
        "\x00",
        "a\x7f",
        " a",
        "a ",
        *(pytest.param(key, marks=pure_only) for key in (1, None, b"a")),
    ],
)
def test_invalid_keys(key: object) -> None:
    with pytest.raises(LocalProtocolError):
        Headers().add(key, "v")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Headers([(key, "v")])  # type: ignore[list-item]
    with pytest.raises(LocalProtocolError):
        encode_header_block({key: "v"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "value", ["a\rb", "a\nb", "\r\n", *(pytest.param(v, marks=pure_only) for v in (1, None, b"v"))]
)
def test_invalid_values(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        Headers().add("k", value)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_header_block({"k": value})  # type: ignore[dict-item]


def test_valid_unusual_keys_and_values() -> None:
    headers = Headers()
    headers.add("$memphis_connectionId", "x")
    headers.add("k\u00e9y", " spaced value\twith tab ")
    headers.add("e", "")
    assert headers.get_all("k\u00e9y") == [" spaced value\twith tab "]


def test_local_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="header key"):
        Headers().add("", "v")


# ---------------------------------------------------------------- encoding


def test_encode_empty_and_none() -> None:
    assert encode_header_block(None) == b"NATS/1.0\r\n\r\n"
    assert encode_header_block({}) == b"NATS/1.0\r\n\r\n"
    assert encode_header_block(Headers()) == b"NATS/1.0\r\n\r\n"


def test_encode_keeps_order_and_repeats() -> None:
    headers = Headers([("B", "1"), ("a", "2"), ("B", "3")])
    assert encode_header_block(headers) == b"NATS/1.0\r\nB: 1\r\na: 2\r\nB: 3\r\n\r\n"
    assert encode_header_block({"x": "y", "K": "v"}) == b"NATS/1.0\r\nx: y\r\nK: v\r\n\r\n"


def test_encode_status() -> None:
    assert encode_header_block(None, status=503) == b"NATS/1.0 503\r\n\r\n"
    assert (
        encode_header_block({"k": "v"}, status=408, description="Request Timeout")
        == b"NATS/1.0 408 Request Timeout\r\nk: v\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (None, "x"),
        (99, ""),
        (1000, ""),
        pytest.param("503", "", marks=pure_only),
        (True, ""),
        (503, "a\r\nb: c"),
    ],
)
def test_encode_bad_status(status: object, description: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_header_block(None, status=status, description=description)  # type: ignore[arg-type]


def test_encode_utf8_and_surrogateescape() -> None:
    assert encode_header_block({"k": "v\u00e4"}) == "NATS/1.0\r\nk: v\u00e4\r\n\r\n".encode()
    assert encode_header_block({"k": "\udcff"}) == b"NATS/1.0\r\nk: \xff\r\n\r\n"
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        encode_header_block({"k": "\ud800"})


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("block", "status", "description", "pairs"),
    [v[1:] for v in HEADER_VALID],
    ids=[v[0] for v in HEADER_VALID],
)
def test_parse_valid(
    block: bytes, status: int | None, description: str, pairs: list[tuple[str, str]]
) -> None:
    got_status, got_description, headers = parse_header_block(block)
    assert (got_status, got_description) == (status, description)
    assert headers.items() == pairs
    assert parse_status_line(block) == (status, description)
    # accepts any bytes-like object
    assert parse_header_block(bytearray(block))[2].items() == pairs
    assert parse_header_block(memoryview(block))[2].items() == pairs


@pytest.mark.parametrize(
    "block", [v[1] for v in HEADER_INVALID], ids=[v[0] for v in HEADER_INVALID]
)
def test_parse_invalid(block: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_header_block(block)


def test_encode_parse_round_trip() -> None:
    headers = Headers([("$memphis_producedBy", "p"), ("msg-id", "1"), ("x", "a"), ("x", "b")])
    status, description, parsed = parse_header_block(encode_header_block(headers))
    assert (status, description) == (None, "")
    assert parsed.items() == headers.items()
    block = encode_header_block(headers, status=100, description="Idle Heartbeat")
    assert parse_header_block(block) == (100, "Idle Heartbeat", headers)


@pytest.mark.parametrize(
    ("block", "pairs"),
    [(v[1], v[4]) for v in HEADER_VALID if v[2] is None],
    ids=[v[0] for v in HEADER_VALID if v[2] is None],
)
def test_parse_encode_is_canonical(block: bytes, pairs: list[tuple[str, str]]) -> None:
    # Re-encoding what we parsed gives the canonical "Key: value" form, which parses the same.
    _, _, headers = parse_header_block(block)
    assert parse_header_block(encode_header_block(headers))[2].items() == pairs
