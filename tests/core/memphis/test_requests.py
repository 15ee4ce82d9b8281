"""Control-plane bodies and replies (docs/protocol.md §2, §3, §7)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memphis_core import LocalProtocolError, RemoteProtocolError
from memphis_core.memphis._control import (
    ClientsUpdate,
    ConsumerCreated,
    ProducerCreated,
    consumer_destroy_body,
    dls_subject,
    encode_consumer_create,
    encode_station_create,
    nacked_dls_body,
    parse_clients_update,
    parse_consumer_reply,
    parse_destroy_reply,
    parse_plain_reply,
    parse_producer_reply,
    parse_schema_create_reply,
    parse_station_create_reply,
    pm_ack_body,
    producer_create_body,
    producer_destroy_body,
    schema_attach_body,
    schema_create_body,
    schema_detach_body,
    schema_updates_subject,
    station_destroy_body,
)
from memphis_core.memphis._enums import RetentionType, SchemaType, StorageType
from memphis_core.memphis._options import consumer_options, station_options
from memphis_core.memphis._schemas import SchemaInit


def pairs(body: bytes) -> list[tuple[str, Any]]:
    """Top-level (key, value) pairs in wire order."""
    out: list[tuple[str, Any]] = json.loads(body, object_pairs_hook=list)
    return out


def exact(text: str) -> str:
    return "^" + re.escape(text) + "$"


# ------------------------------------------------------------------------------ builders


def station_create_body(name: str, *, username: str, **options: Any) -> bytes:
    """Validated options into the request body, as the client does it."""
    return encode_station_create(station_options(name, **options), username=username)


def consumer_create_body(
    station: str, name: str, *, connection_id: str, username: str, app_id: str, **options: Any
) -> bytes:
    opts = consumer_options(station, name, **options)
    return encode_consumer_create(
        opts, connection_id=connection_id, username=username, app_id=app_id
    )


def test_station_create_defaults_exact_bytes() -> None:
    body = station_create_body("Orders.EU", username="root")
    assert body == (
        b'{"name":"Orders.EU","retention_type":"message_age_sec","retention_value":3600,'
        b'"storage_type":"file","replicas":1,"idempotency_window_in_ms":120000,'
        b'"schema_name":"","dls_configuration":{"poison":true,"schemaverse":true},'
        b'"username":"root","tiered_storage_enabled":false,"partitions_number":1,'
        b'"dls_station":""}'
    )


def test_station_create_enum_or_string_same_bytes() -> None:
    a = station_create_body(
        "s",
        username="u",
        retention_type=RetentionType.MESSAGES,
        storage_type=StorageType.MEMORY,
        retention_value=10,
        idempotency_window=1.5,
        partitions_number=3,
        send_poison_msg_to_dls=False,
        dls_station="dls",
    )
    b = station_create_body(
        "s",
        username="u",
        retention_type="messages",
        storage_type="memory",
        retention_value=10,
        idempotency_window=1.5,
        partitions_number=3,
        send_poison_msg_to_dls=False,
        dls_station="dls",
    )
    assert a == b
    body = dict(pairs(a))
    assert body["retention_type"] == "messages"
    assert body["storage_type"] == "memory"
    assert body["idempotency_window_in_ms"] == 1500
    assert body["partitions_number"] == 3
    assert body["dls_configuration"] == [("poison", False), ("schemaverse", True)]
    assert encode_station_create(station_options("s", retention_type="messages",
        storage_type="memory", retention_value=10, idempotency_window=1.5,
        partitions_number=3, send_poison_msg_to_dls=False, dls_station="dls"),
        username="u") == a  # fmt: skip


def test_station_create_unknown_enum() -> None:
    with pytest.raises(
        LocalProtocolError,
        match=exact(
            "retention type can be one of the following message_age_sec/messages/bytes/ack_based"
        ),
    ):
        station_create_body("s", username="u", retention_type="forever")


def test_station_destroy() -> None:
    assert station_destroy_body("Orders", username="root") == (
        b'{"station_name":"Orders","username":"root"}'
    )


def test_producer_create() -> None:
    body = producer_create_body("Orders.EU", "Web", connection_id="c1", username="root", app_id="a")
    assert pairs(body) == [
        ("name", "web"),
        ("station_name", "Orders.EU"),
        ("connection_id", "c1"),
        ("producer_type", "application"),
        ("req_version", 4),
        ("username", "root"),
        ("app_id", "a"),
        ("sdk_lang", "python"),
    ]


def test_producer_create_bad_name() -> None:
    with pytest.raises(
        LocalProtocolError,
        match=exact("Only alphanumeric and the '_', '-', '.' characters are allowed in Producer"),
    ):
        producer_create_body("s", "a b", connection_id="c", username="u", app_id="a")


def test_producer_destroy() -> None:
    assert pairs(producer_destroy_body("S", "web", connection_id="c", username="u")) == [
        ("name", "web"),
        ("station_name", "S"),
        ("username", "u"),
        ("connection_id", "c"),
        ("req_version", 1),
    ]


def test_consumer_create() -> None:
    body = consumer_create_body("S", "Billing", connection_id="c", username="u", app_id="a")
    assert pairs(body) == [
        ("name", "Billing"),  # original case (docs/protocol.md §7.1)
        ("station_name", "S"),
        ("connection_id", "c"),
        ("consumer_type", "application"),
        ("consumers_group", "Billing"),  # "" -> the name
        ("max_ack_time_ms", 30000),
        ("max_msg_deliveries", 10),
        ("username", "u"),
        ("start_consume_from_sequence", 1),
        ("last_messages", -1),
        ("req_version", 4),
        ("app_id", "a"),
        ("sdk_lang", "python"),
    ]
    opts = consumer_options("S", "x", consumer_group="G", max_ack_time=1.25, last_messages=5)
    got = dict(pairs(encode_consumer_create(opts, connection_id="c", username="u", app_id="a")))
    assert (got["consumers_group"], got["max_ack_time_ms"], got["last_messages"]) == ("G", 1250, 5)


def test_consumer_create_validates() -> None:
    with pytest.raises(LocalProtocolError, match=exact("min value for LastMessages is -1")):
        consumer_create_body(
            "S", "c", connection_id="c", username="u", app_id="a", last_messages=-5
        )


def test_consumer_destroy() -> None:
    assert pairs(consumer_destroy_body("S", "Billing", connection_id="c", username="u")) == [
        ("name", "Billing"),
        ("station_name", "S"),
        ("username", "u"),
        ("connection_id", "c"),
        ("req_version", 1),
    ]


def test_schema_bodies() -> None:
    assert pairs(schema_create_body("order", SchemaType.JSON, "{}", username="root")) == [
        ("name", "order"),
        ("type", "json"),
        ("created_by_username", "root"),
        ("schema_content", "{}"),
        ("message_struct_name", ""),
    ]
    assert schema_create_body("o", "avro", "x", username="u") == schema_create_body(
        "o", SchemaType.AVRO, "x", username="u"
    )
    assert schema_attach_body("order", "Orders", username="u") == (
        b'{"name":"order","station_name":"Orders","username":"u"}'
    )
    assert schema_detach_body("Orders", username="u") == b'{"station_name":"Orders","username":"u"}'


def test_schema_create_checks() -> None:
    with pytest.raises(LocalProtocolError, match=r"^unsupported schema type"):
        schema_create_body("o", "xml", "x", username="u")
    with pytest.raises(LocalProtocolError, match=exact("Schema name can not be empty")):
        schema_create_body("", "json", "x", username="u")
    # Not lower-cased first, as the Go SDK does: upper case fails the regex.
    with pytest.raises(LocalProtocolError, match=r"allowed in Schema$"):
        schema_create_body("Order", "json", "x", username="u")


def test_unicode_content_is_utf8() -> None:
    body = schema_create_body("o", "graphql", "# café\ntype Query {a: Int}", username="u")
    assert "café".encode() in body
    assert json.loads(body)["schema_content"].startswith("# café")


def test_pm_ack_body() -> None:
    assert pm_ack_body("17", "cg") == b'{"id":17,"cg_name":"cg"}'
    assert pm_ack_body(3, "cg") == b'{"id":3,"cg_name":"cg"}'
    for bad in ("x", "-1", -1, True):
        with pytest.raises(LocalProtocolError):
            pm_ack_body(bad, "cg")


def test_nacked_dls_body() -> None:
    body = nacked_dls_body("orders#eu", error="bad", partition=2, cg_name="Billing", seq=9)
    assert body == (
        b'{"station_name":"orders#eu","error":"bad","partition":2,"cg_name":"Billing","seq":9}'
    )
    with pytest.raises(LocalProtocolError):
        nacked_dls_body("s", error="e", partition=0, cg_name="c", seq=1)


def test_subjects() -> None:
    assert schema_updates_subject("a#b") == "$memphis_schema_updates_a#b"
    assert dls_subject("a#b", "cg") == "$memphis_dls_a#b.cg"


# ------------------------------------------------------------------------------ plain replies


def test_plain_reply() -> None:
    assert parse_plain_reply(b"") is None
    assert parse_plain_reply(b"boom") == "boom"
    assert parse_plain_reply(b"\xffx") == "\ufffdx"
    assert parse_station_create_reply(b"Station orders already exists") is None
    assert parse_station_create_reply(b"user u is not allowed") == "user u is not allowed"
    assert parse_destroy_reply(b"Producer p at station s does not exist") is None
    assert parse_destroy_reply(b"memphis: timeout") == "memphis: timeout"


def test_schema_create_reply() -> None:
    assert parse_schema_create_reply(b'{"error":""}') is None
    assert parse_schema_create_reply(b'{"error":"order already exists in the db"}') is None
    assert parse_schema_create_reply(b'{"error":"your json schema is invalid"}') == (
        "your json schema is invalid"
    )
    assert parse_schema_create_reply(b"plain failure") == "plain failure"


# ------------------------------------------------------------------------------ creation replies

FULL_PRODUCER_REPLY = (
    b'{"schema_update":{"schema_name":"s","active_version":{"version_number":3,'
    b'"descriptor":"","schema_content":"{}","message_struct_name":""},"type":"json"},'
    b'"partitions_update":{"partitions_list":[1,2,3]},"schemaverse_to_dls":true,'
    b'"send_notification":false,"station_version":2,'
    b'"station_partitions_first_functions":{"2":7},"error":""}'
)


def test_producer_reply_full() -> None:
    reply = parse_producer_reply(FULL_PRODUCER_REPLY)
    assert reply == ProducerCreated(
        partitions=(1, 2, 3),
        schema=SchemaInit("s", "json", 3, "", "{}", ""),
        schemaverse_to_dls=True,
        send_notification=False,
        station_version=2,
        functions={2: 7},
    )


def test_producer_reply_no_schema_and_error() -> None:
    empty_schema = (
        b'{"schema_update":{"schema_name":"","active_version":{"version_number":0,'
        b'"descriptor":"","schema_content":"","message_struct_name":""},"type":""},'
        b'"partitions_update":{"partitions_list":[1]},"station_version":2,"error":""}'
    )
    reply = parse_producer_reply(empty_schema)
    assert reply.schema is None
    assert reply.partitions == (1,)
    assert reply.error is None
    err = parse_producer_reply(b'{"error":"User u does not exist"}')
    assert err.error == "User u does not exist"


def test_producer_reply_old_broker() -> None:
    assert parse_producer_reply(b"") == ProducerCreated(legacy=True)
    assert parse_producer_reply(b"some error") == ProducerCreated(error="some error", legacy=True)
    assert parse_producer_reply(b'"json string"').legacy


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":1}',
        b'{"partitions_update":{"partitions_list":["1"]}}',
        b'{"partitions_update":{"partitions_list":[0]}}',
        b'{"partitions_update":[1]}',
        b'{"schemaverse_to_dls":"yes"}',
        b'{"station_version":"2"}',
        b'{"station_partitions_first_functions":{"x":1}}',
        b'{"schema_update":{"schema_name":"s","type":"json","active_version":{"version_number":"1"}}}',
    ],
)
def test_producer_reply_bad_shapes(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_producer_reply(body)


def test_consumer_reply() -> None:
    assert parse_consumer_reply(
        b'{"schema_update":{"schema_name":""},"partitions_update":{"partitions_list":[1,2]},'
        b'"error":""}'
    ) == ConsumerCreated(partitions=(1, 2))
    # Real broker errors arrive as plain text (docs/protocol.md §7.2); legacy = no partitions.
    assert parse_consumer_reply(b"Consumer name can not be empty") == ConsumerCreated(
        error="Consumer name can not be empty", legacy=True
    )
    assert parse_consumer_reply(b"") == ConsumerCreated(legacy=True)
    assert parse_consumer_reply(b'{"partitions_update":{"partitions_list":null},"error":""}') == (
        ConsumerCreated()
    )
    assert parse_consumer_reply(b"null") == ConsumerCreated()


@given(st.binary(max_size=200))
def test_reply_parsers_total(body: bytes) -> None:
    # Any bytes: a result, or RemoteProtocolError; nothing else.
    for parse in (parse_producer_reply, parse_consumer_reply):
        with contextlib.suppress(RemoteProtocolError):
            parse(body)
    parse_clients_update(body)
    parse_plain_reply(body)


@given(
    st.lists(st.integers(1, 10_000), max_size=20),
    st.booleans(),
    st.booleans(),
    st.integers(0, 5),
)
def test_producer_reply_roundtrip(parts: list[int], dls: bool, notify: bool, version: int) -> None:
    body = json.dumps(
        {
            "partitions_update": {"partitions_list": parts},
            "schemaverse_to_dls": dls,
            "send_notification": notify,
            "station_version": version,
            "error": "",
        }
    ).encode()
    reply = parse_producer_reply(body)
    assert reply.partitions == tuple(parts)
    assert (reply.schemaverse_to_dls, reply.send_notification) == (dls, notify)
    assert reply.station_version == version


# ------------------------------------------------------------------------------ pushes


def test_clients_update() -> None:
    assert parse_clients_update(
        b'{"station_name":"a#b","type":"schemaverse_to_dls","update":true}'
    ) == ClientsUpdate("schemaverse_to_dls", "a#b", True)
    upd = parse_clients_update(b'{"station_name":"X.Y","type":"remove_station","update":null}')
    assert upd == ClientsUpdate("remove_station", "X.Y", False)
    assert upd is not None
    assert upd.internal_station == "x#y"
    assert parse_clients_update(b'{"type":"send_notification","update":false}') == ClientsUpdate(
        "send_notification", "", False
    )
    for ignored in (b"", b"nope", b"[]", b'{"type":"other"}', b'{"type":"send_notification",'
                    b'"update":"yes"}'):  # fmt: skip
        assert parse_clients_update(ignored) is None
