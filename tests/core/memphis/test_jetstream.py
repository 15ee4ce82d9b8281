"""JetStream details: pub-acks, ack subjects, pull and delay bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memphis_core import MemphisError, RemoteProtocolError
from memphis_core.memphis._jetstream import (
    PubAck,
    _fast_pub_ack,
    nak_delay_body,
    parse_ack_subject,
    parse_pub_ack,
    pull_body,
)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"stream":"orders$1","seq":5}', PubAck("orders$1", 5, False)),
        (b'{"stream":"o","seq":12,"duplicate":true}', PubAck("o", 12, True)),
        # nats-server's own spelling, with a space (a fast path keyed on "duplicate":true
        # without it once reported every duplicate as new).
        (b'{"stream":"o","seq":12, "duplicate": true}', PubAck("o", 12, True)),
        (b'{"stream":"o","domain":"hub","seq":3}', PubAck("o", 3, False)),
        (b'{"stream":"a\\"b","seq":1}', PubAck('a"b', 1, False)),
    ],
)
def test_pub_ack(payload: bytes, expected: PubAck) -> None:
    assert parse_pub_ack(payload) == expected


@pytest.mark.parametrize("payload", [b"", b"[]", b"{}", b'{"stream":1,"seq":2}', b"nope"])
def test_malformed_pub_ack(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_pub_ack(payload)


@given(
    stream=st.text(min_size=1, max_size=30),
    seq=st.integers(min_value=0, max_value=2**63),
    duplicate=st.booleans(),
    domain=st.none() | st.text(max_size=10),
)
def test_fast_path_agrees_with_json(
    stream: str, seq: int, duplicate: bool, domain: str | None
) -> None:
    body: dict[str, object] = {"stream": stream, "seq": seq}
    if domain is not None:
        body["domain"] = domain
    if duplicate:
        body["duplicate"] = True
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    expected = PubAck(stream, seq, duplicate)
    fast = _fast_pub_ack(payload)
    assert fast is None or fast == expected
    assert parse_pub_ack(payload) == expected


def test_ack_subjects_old_and_new_forms() -> None:
    old = parse_ack_subject("$JS.ACK.orders$1.billing.2.42.7.1700000000000000000.3")
    assert (old.stream, old.consumer, old.delivered, old.stream_seq, old.pending) == (
        "orders$1",
        "billing",
        2,
        42,
        3,
    )
    new = parse_ack_subject("$JS.ACK.hub.ACCHASH.orders$1.billing.1.43.8.1700000000000000000.0.x")
    assert (new.stream, new.consumer, new.stream_seq, new.consumer_seq) == (
        "orders$1",
        "billing",
        43,
        8,
    )
    for bad in ("$JS.ACK.a.b.c", "_INBOX.x.1", "$JS.ACK.s.c.x.1.1.1.0"):
        with pytest.raises(RemoteProtocolError):
            parse_ack_subject(bad)


def test_pull_and_delay_bodies() -> None:
    assert json.loads(pull_body(100, 0.25)) == {"batch": 100, "expires": 250_000_000}
    assert nak_delay_body(1.5) == b'-NAK {"delay":1500000000}'


def test_pub_ack_error_text_is_prefixed_once() -> None:
    # Field report: some texts came out as "memphis: memphis: x".
    with pytest.raises(MemphisError, match=r"^memphis: maximum messages exceeded$"):
        parse_pub_ack(b'{"error":{"code":503,"description":"nats: maximum messages exceeded"}}')
    with pytest.raises(MemphisError, match=r"^memphis: stream offline$"):
        parse_pub_ack(b'{"error":{"code":503,"description":"stream offline"}}')
