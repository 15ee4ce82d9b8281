"""Bad input: Go-compatible decoding (docs/protocol.md §0.2) and a reply for every malformed
request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_broker._gojson import GoJSONError, decode, encode
from tests.support.control_client import Body, Client
from tests.support.waits import poll

Run = Callable[[Body], None]
SPEC: Any = {
    "name": "string",
    "n": "int",
    "u": "uint64",
    "ok": "bool",
    "dls": {"poison": "bool", "schemaverse": "bool"},
}
ZERO = {"name": "", "n": 0, "u": 0, "ok": False, "dls": {"poison": False, "schemaverse": False}}


def test_decode_is_case_insensitive_and_ignores_unknown_keys() -> None:
    got = decode(b'{"NAME":"a","N":3,"extra":[1],"Dls":{"SchemaVerse":true}}', SPEC, "Req")
    assert got == {**ZERO, "name": "a", "n": 3, "dls": {"poison": False, "schemaverse": True}}


def test_exact_key_wins_over_folded_and_last_occurrence_wins() -> None:
    assert decode(b'{"name":"a","name":"b"}', SPEC, "Req")["name"] == "b"


@pytest.mark.parametrize("payload", [b"null", b"{}", b'{"name":null,"dls":null}'])
def test_null_and_missing_give_zero_values(payload: bytes) -> None:
    assert decode(payload, SPEC, "Req") == ZERO


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"", "unexpected end of JSON input"),
        (b"   ", "unexpected end of JSON input"),
        (b'{"name":', "unexpected end of JSON input"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b"[1]", "json: cannot unmarshal array into Go value of type models.Req"),
        (b'"s"', "json: cannot unmarshal string into Go value of type models.Req"),
        (
            b'{"name":1}',
            "json: cannot unmarshal number 1 into Go struct field Req.name of type string",
        ),
        (b'{"n":"1"}', "json: cannot unmarshal string into Go struct field Req.n of type int"),
        (b'{"n":1.5}', "json: cannot unmarshal number 1.5 into Go struct field Req.n of type int"),
        (b'{"n":1e2}', "json: cannot unmarshal number 1e2 into Go struct field Req.n of type int"),
        (b'{"n":true}', "json: cannot unmarshal bool into Go struct field Req.n of type int"),
        (
            b'{"n":99999999999999999999}',
            "json: cannot unmarshal number 99999999999999999999 into Go struct field Req.n "
            "of type int",
        ),
        (b'{"u":-1}', "json: cannot unmarshal number -1 into Go struct field Req.u of type uint64"),
        (b'{"ok":"yes"}', "json: cannot unmarshal string into Go struct field Req.ok of type bool"),
        (
            b'{"dls":{"poison":1}}',
            "json: cannot unmarshal number 1 into Go struct field Req.dls.poison of type bool",
        ),
        (b'{"n":NaN}', "invalid character 'N' looking for beginning of value"),
        (b'{"n":Infinity}', "invalid character 'I' looking for beginning of value"),
    ],
)
def test_go_error_texts(payload: bytes, text: str) -> None:
    with pytest.raises(GoJSONError) as err:
        decode(payload, SPEC, "Req")
    assert str(err.value) == text


def test_encode_is_go_compact() -> None:
    assert encode({"a": "<&>", "b": [1, None]}) == b'{"a":"\\u003c\\u0026\\u003e","b":[1,null]}'


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_any_bytes_gives_result_or_goerror(payload: bytes) -> None:
    try:
        got = decode(payload, SPEC, "Req")
    except GoJSONError:
        return
    assert set(got) == set(SPEC)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "N", "u", "ok", "dls", "x"]), _json, max_size=5))
def test_decode_any_object(doc: dict[str, Any]) -> None:
    try:
        got = decode(json.dumps(doc).encode(), SPEC, "Req")
    except GoJSONError as err:
        message = str(err)
    else:
        message = ""
    if message:
        assert message.startswith("json: cannot unmarshal")
        return
    assert isinstance(got["n"], int)
    assert isinstance(got["name"], str)


JSON_SUBJECTS = ("$memphis_producer_creations", "$memphis_schema_creations")
TEXT_SUBJECTS = (
    "$memphis_station_creations",
    "$memphis_station_destructions",
    "$memphis_producer_destructions",
    "$memphis_consumer_creations",
    "$memphis_consumer_destructions",
    "$memphis_schema_attachments",
    "$memphis_schema_detachments",
)
BAD = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"\xff\xfe\x00garbage",
    b'{"name": {"nested": 1}, "station_name": [1]}',
    b'{"name": 123, "req_version": "4", "partitions_number": "one"}',
    json.dumps(
        {
            "name": "n" * 200_000,
            "station_name": "s" * 200_000,
            "schema_content": "x",
            "type": "json",
        }
    ).encode(),
]


@pytest.mark.parametrize("payload", BAD, ids=range(len(BAD)))
def test_every_request_subject_answers_bad_input(run: Run, payload: bytes) -> None:
    async def body(c: Client) -> None:
        for subject in TEXT_SUBJECTS:
            reply = await c.request(subject, payload)
            assert reply, subject  # an error text, never a silent drop or fake success
            assert not reply.startswith(b"{"), subject
        for subject in JSON_SUBJECTS:
            reply = await c.request(subject, payload)
            assert json.loads(reply)["error"], subject

    run(body)


def test_huge_names_get_the_length_error(run: Run) -> None:
    async def body(c: Client) -> None:
        huge = "a" * 100_000
        assert await c.create_station(huge) == "Station should be under 128 characters"
        assert (await c.create_producer("ok-station", huge))["error"] == (
            "Producer should be under 128 characters"
        )
        assert await c.create_consumer("ok-station", huge) == (
            "Consumer should be under 128 characters"
        )

    run(body)


def test_fire_and_forget_garbage_is_survived(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        for subject in (
            "$memphis_schemaverse_dls",
            "$memphis_nacked_dls",
            "$memphis_pm_acks",
            "$memphis_notifications",
        ):
            for payload in BAD[:8]:
                await c.nc.publish(subject, payload)
        await c.nc.publish(
            "$memphis_notifications",
            json.dumps(
                {"Title": "t", "Msg": "m", "Type": "schema_validation_fail_alert", "Code": "c"}
            ).encode(),
        )
        assert await c.create_station(name) == ""
        report = {
            "station_name": name,
            "producer": {"name": "p"},
            "message": {"data": "zz-not-hex", "headers": {"a": 1}},
            "validation_error": "v",
        }
        await c.nc.publish("$memphis_schemaverse_dls", json.dumps(report).encode())

        async def stored() -> list[dict[str, Any]]:
            return [r for r in await c.rows("dls") if r["station"] == name]

        (row,) = await poll(stored, timeout=15)
        assert row["message_details"]["headers"] == {"a": "1"}

    run(body)
