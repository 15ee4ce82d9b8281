"""Schemaverse: create (all four types, from tests/data/schemas), enforce, validate on produce,
data_deserialized, detach, live updates to running producers, the deprecated attach_schema."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.names import SCHEMAS
from tests.support.probe import BrokerProbe
from tests.support.waits import wait_until

WAIT = 0.3
FAILED = "Schema validation has failed: "


@dataclass(frozen=True)
class Case:
    schema_type: str
    file: str
    valid: Any
    invalid: Any
    check: Callable[[Any], bool]


CASES = {
    "json": Case(
        "json",
        "test.schema.json",
        {"locality": "Paris", "region": "IDF"},
        {"region": "no locality"},
        lambda d: d == {"locality": "Paris", "region": "IDF"},
    ),
    "avro": Case(
        "avro",
        "test.avsc",
        {"username": "ada", "age": 36, "phone": 5551234567, "country": "UK"},
        {"username": "ada", "age": "not an int"},
        lambda d: d["username"] == "ada" and d["age"] == 36 and d["country"] == "UK",
    ),
    "graphql": Case(
        "graphql",
        "test.graphql",
        "query { greeting students { id firstName } }",
        "query { noSuchField }",
        lambda d: d == "query { greeting students { id firstName } }",
    ),
    "protobuf3": Case(
        "protobuf",
        "test3.proto",
        {"field1": "a", "field2": "b", "field3": 3},
        b"\xff\xff\xff\xff not protobuf",
        lambda d: (d.field1, d.field2, d.field3) == ("a", "b", 3),
    ),
    "protobuf2": Case(
        "protobuf",
        "test2.proto",
        {"field1": "a", "field3": 7},
        {"field1": "missing the required field3"},
        lambda d: (d.field1, d.field3) == ("a", 7),
    ),
}


def _schema(conn: Any, memphis: Any, name: Callable[[str], str], case: Case) -> str:
    schema = name("schema")
    conn.create_schema(schema, memphis.SchemaType(case.schema_type), str(SCHEMAS / case.file))
    return schema


@pytest.mark.parametrize("case_id", list(CASES))
def test_enforced_schema_validates_and_deserializes(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str], case_id: str
) -> None:
    case = CASES[case_id]
    schema = _schema(conn, memphis, name, case)
    station = name("st")
    conn.create_station(station)
    conn.enforce_schema(schema, station)
    producer = conn.create_producer(station, "p")
    producer.produce(case.valid)
    with pytest.raises(memphis.MemphisSchemaError) as info:
        producer.produce(case.invalid)
    assert str(info.value).startswith(FAILED)
    assert isinstance(info.value, memphis.MemphisError)
    assert probe.message_count(station) == 1  # the invalid message was not stored
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert case.check(msg.data_deserialized())


@pytest.mark.parametrize("case_id", ["json", "avro"])
def test_json_like_schemas_accept_json_bytes(
    memphis: Any, conn: Any, name: Callable[[str], str], case_id: str
) -> None:
    case = CASES[case_id]
    schema = _schema(conn, memphis, name, case)
    station = name("st")
    conn.create_station(station, schema_name=schema)  # schema at creation = enforce
    producer = conn.create_producer(station, "p")
    producer.produce(json.dumps(case.valid).encode())
    with pytest.raises(memphis.MemphisSchemaError, match=f"^{FAILED}Bad (JSON|Avro) format - "):
        producer.produce(b"{not json")
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert json.loads(msg.data) == case.valid


def test_protobuf_garbage_has_the_go_text(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["protobuf3"])
    station = name("st")
    conn.create_station(station, schema_name=schema)
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisSchemaError) as info:
        producer.produce(b"\xff\xff\xff\xff")
    assert str(info.value) == FAILED + "invalid message format, expecting protobuf"


def test_schema_type_as_plain_string(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = name("schema")
    conn.create_schema(schema, "json", str(SCHEMAS / "test.schema.json"))
    station = name("st")
    conn.create_station(station)
    conn.enforce_schema(schema, station)
    with pytest.raises(memphis.MemphisSchemaError):
        conn.create_producer(station, "p").produce({"no": "locality"})


def test_create_schema_twice_with_the_same_content(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["json"])
    # "already exists" is success (docs/protocol.md §8.2), and the schema still works.
    conn.create_schema(schema, memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
    station = name("st")
    conn.create_station(station, schema_name=schema)
    with pytest.raises(memphis.MemphisSchemaError):
        conn.create_producer(station, "p").produce({"no": "locality"})


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ("", "Schema name can not be empty"),
        ("UpperCase", "Only alphanumeric and the '_', '-', '.' characters are allowed in Schema"),
        ("bad name", "Only alphanumeric and the '_', '-', '.' characters are allowed in Schema"),
        ("-lead", "Schema name can not start or end with non alphanumeric character"),
        ("s" * 129, "Schema should be under 128 characters"),
    ],
)
def test_bad_schema_names(memphis: Any, conn: Any, bad: str, text: str) -> None:
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_schema(bad, memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
    assert str(info.value) == text


def test_unsupported_schema_type(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    with pytest.raises(memphis.LocalProtocolError, match=r"^unsupported schema type"):
        conn.create_schema(name("schema"), "xml", str(SCHEMAS / "test.schema.json"))


@pytest.mark.parametrize(
    ("schema_type", "content", "text"),
    [
        ("json", '{"type": 12}', "your json schema is invalid: at /type: "),
        (
            "json",
            '{\n  "type": "object",\n  "properties": {,}\n}',
            r"invalid: line 3, column 18: Expecting property name",
        ),
        ("protobuf", "syntax = \"proto3\"; message {", "your Proto file is invalid"),
        ("avro", '{"type": "record"}', "your Avro file is invalid"),
        ("json", "", "your schema content is invalid"),
    ],
    ids=["json", "json-syntax", "protobuf", "avro", "empty"],
)
def test_invalid_schema_content_is_refused_by_the_broker(
    memphis: Any,
    conn: Any,
    name: Callable[[str], str],
    tmp_path: Path,
    schema_type: str,
    content: str,
    text: str,
) -> None:
    path = tmp_path / "schema.txt"
    path.write_text(content)
    with pytest.raises(memphis.MemphisError, match=text):
        conn.create_schema(name("schema"), schema_type, str(path))


def test_missing_schema_file(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    with pytest.raises((OSError, memphis.MemphisError)):
        conn.create_schema(name("schema"), "json", "/nonexistent/schema.json")


def test_enforce_unknown_schema_or_station(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station)
    with pytest.raises(memphis.MemphisError, match="does not exist"):
        conn.enforce_schema(name("nope"), station)
    schema = _schema(conn, memphis, name, CASES["json"])
    with pytest.raises(memphis.MemphisError, match="does not exist"):
        conn.enforce_schema(schema, name("no-station"))


def test_detach_stops_validation(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["json"])
    station = name("st")
    conn.create_station(station)
    conn.enforce_schema(schema, station)
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisSchemaError):
        producer.produce({"no": "locality"})
    conn.detach_schema(station)

    def accepted() -> bool:
        try:
            producer.produce({"no": "locality"})
        except memphis.MemphisSchemaError:
            return False
        return True

    wait_until(accepted, what="detach to reach the producer")
    # A consumer on a station without a schema gets raw bytes back.
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert msg.data_deserialized() == b'{"no":"locality"}'


def test_live_schema_update_reaches_running_producers(
    memphis: Any, connect: Callable[..., Any], probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    admin, worker = connect(), connect()
    admin.create_station(station)
    # The producer exists (on another connection) before any schema is attached.
    producer = worker.create_producer(station, "p")
    producer.produce({"no": "locality"})  # no schema yet: anything goes
    schema = _schema(admin, memphis, name, CASES["json"])
    admin.enforce_schema(schema, station)

    def refused() -> bool:
        try:
            producer.produce({"no": "locality"})
        except memphis.MemphisSchemaError:
            return True
        return False

    wait_until(refused, what="the schema update to reach the running producer")
    before = probe.message_count(station)
    producer.produce({"locality": "Rome"})  # valid messages still go through
    assert probe.message_count(station) == before + 1
    admin.detach_schema(station)
    wait_until(lambda: not refused(), what="the detach to reach the running producer")


def test_deserialize_a_message_that_does_not_match(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station)
    conn.create_producer(station, "p").produce(b"plain text, not JSON")
    schema = _schema(conn, memphis, name, CASES["json"])
    conn.enforce_schema(schema, station)
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    with pytest.raises(memphis.MemphisSchemaError) as info:
        msg.data_deserialized()
    assert str(info.value).startswith(
        "Deserialization has been failed since the message format does not align with the "
        "currently attached schema: "
    )
    assert msg.data == b"plain text, not JSON"


def test_attach_schema_is_a_deprecated_alias(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["json"])
    station = name("st")
    conn.create_station(station)
    with pytest.warns(DeprecationWarning, match=r"(?i)enforce_schema|deprecat"):
        conn.attach_schema(schema, station)
    with pytest.raises(memphis.MemphisSchemaError):
        conn.create_producer(station, "p").produce({"no": "locality"})


def test_enforce_schema_does_not_warn(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["json"])
    station = name("st")
    conn.create_station(station)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        conn.enforce_schema(schema, station)


def test_schema_failure_is_reported_to_the_dls(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    schema = _schema(conn, memphis, name, CASES["json"])
    station = name("st")
    conn.create_station(station, schema_name=schema)
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisSchemaError) as info:
        producer.produce({"region": "no locality"}, headers={"k": "v"})
    rows = wait_until(lambda: probe.dls_rows(station), what="a schema DLS row")
    (row,) = rows
    assert row["message_type"] == "schema"
    assert row["producer_name"] == "p"
    assert row["validation_error"]
    assert row["validation_error"] in str(info.value)
    assert bytes.fromhex(row["message_details"]["data"]) == b'{"region":"no locality"}'
    assert row["message_details"]["headers"]["k"] == "v"
