"""Schemaverse helpers (docs/protocol.md §4.2, §5, §7.10, §7.13, §6, §7.9)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import subprocess
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_core import (
    MemphisSchemaError,
    MessageTypeError,
    MissingExtraError,
    SchemaValidationError,
)
from memphis_core.memphis._schemas import (
    Schema,
    SchemaUpdate,
    notification_body,
    parse_schema_init,
    parse_schema_update,
    schema_failure_notification_body,
    schemaverse_dls_body,
)
from memphis_core.memphis._validators import (
    SchemaInit,
    avro_schema_problem,
    serialize_plain,
)
from tests.support.names import SCHEMAS

FAILED = "Schema validation has failed: "
DESER = (
    "Deserialization has been failed since the message format does not align with the "
    "currently attached schema: "
)


def protoc_descriptor(tmp_path: Path, source: str, name: str, version: int) -> str:
    """Compile ``source`` the way the broker does (docs/protocol.md §8.2) and return base64."""
    from grpc_tools import protoc

    work = tmp_path / f"proto_{name}_{version}"
    work.mkdir()
    fname = f"{name}_{version}.proto"
    (work / fname).write_text(source)
    out = work / "set.pb"
    include = str(resources.files("grpc_tools") / "_proto")
    rc = protoc.main(
        ["protoc", f"--proto_path={work}", f"--proto_path={include}",
         f"--descriptor_set_out={out}", fname]
    )  # fmt: skip
    assert rc == 0
    return base64.b64encode(out.read_bytes()).decode()


def user_class(descriptor_b64: str, message: str) -> Any:
    """The class a user would have from protoc --python_out, built in its own pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(descriptor_b64))
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    for f in fds.file:
        fd = pool.FindFileByName(f.name)
        if message in fd.message_types_by_name:
            return message_factory.GetMessageClass(fd.message_types_by_name[message])
    raise AssertionError(message)


def make(kind: str, content: str = "", **kw: Any) -> Schema:
    return Schema(SchemaInit(schema_name=kw.pop("name", "s"), schema_type=kind,
                             schema_content=content, **kw))  # fmt: skip


@pytest.fixture(scope="module")
def proto3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Schema, Any]:
    tmp = tmp_path_factory.mktemp("p3")
    desc = protoc_descriptor(tmp, (SCHEMAS / "test3.proto").read_text(), "test3", 1)
    schema = make("protobuf", name="test3", version_number=1, descriptor=desc,
                  message_struct_name="Test3")  # fmt: skip
    return schema, user_class(desc, "Test3")


@pytest.fixture(scope="module")
def proto2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Schema, Any]:
    tmp = tmp_path_factory.mktemp("p2")
    desc = protoc_descriptor(tmp, (SCHEMAS / "test2.proto").read_text(), "test2", 4)
    schema = make("protobuf", name="test2", version_number=4, descriptor=desc,
                  message_struct_name="Test2")  # fmt: skip
    return schema, user_class(desc, "Test2")


def json_schema() -> Schema:
    return make("json", (SCHEMAS / "test.schema.json").read_text())


def avro_schema() -> Schema:
    return make("avro", (SCHEMAS / "test.avsc").read_text())


def graphql_schema() -> Schema:
    return make("graphql", (SCHEMAS / "test.graphql").read_text())


def failure(schema: Schema, message: object) -> SchemaValidationError:
    with pytest.raises(SchemaValidationError) as info:
        schema.serialize(message)
    assert str(info.value) == FAILED + info.value.validation_error
    return info.value


# ------------------------------------------------------------------------------ import hygiene


def test_core_imports_only_stdlib() -> None:
    code = (
        "import sys, memphis_core.memphis._schemas, memphis_core.memphis._control, "
        "memphis_core.memphis._options, "
        "memphis_core.memphis._partitions, memphis_core.memphis._enums\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('google', 'jsonschema', 'fastavro', 'graphql', 'mmh3'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastavro", None)
    monkeypatch.setitem(sys.modules, "fastavro.validation", None)
    schema = avro_schema()
    with pytest.raises(MissingExtraError, match=r"memphis-sansio\[schemas\]") as info:
        schema.serialize({"username": "u"})
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, MemphisSchemaError)
    monkeypatch.undo()
    # Not cached: once the library is there the same Schema works.
    assert schema.serialize(b'{"username":"u","age":1,"phone":2,"country":"c"}')


# ------------------------------------------------------------------------------ updates


INIT = {
    "schema_name": "s",
    "type": "json",
    "active_version": {
        "version_number": 3,
        "descriptor": "",
        "schema_content": "{}",
        "message_struct_name": "",
    },
}
DROP_INIT = {
    "schema_name": "",
    "type": "",
    "active_version": {"version_number": 0, "descriptor": "", "schema_content": "",
                       "message_struct_name": ""},
}  # fmt: skip


def test_schema_update_init_and_drop() -> None:
    init = parse_schema_update(json.dumps({"UpdateType": 1, "init": INIT}).encode())
    assert init == SchemaUpdate("init", SchemaInit("s", "json", 3, "", "{}", ""))
    drop = parse_schema_update(json.dumps({"UpdateType": 2, "init": DROP_INIT}).encode())
    assert drop == SchemaUpdate("drop", None)
    # An init naming no schema means "no validation": the same as a drop.
    assert parse_schema_update(json.dumps({"UpdateType": 1, "init": DROP_INIT}).encode()) == (
        SchemaUpdate("drop", None)
    )


def random_case(s: str) -> st.SearchStrategy[str]:
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in s)).map("".join)


@given(
    random_case("UpdateType"),
    random_case("init"),
    random_case("schema_name"),
    random_case("active_version"),
    random_case("version_number"),
)
def test_schema_update_keys_case_insensitive(
    k_update: str, k_init: str, k_name: str, k_active: str, k_version: str
) -> None:
    body = {
        k_update: 1,
        k_init: {k_name: "s", "TYPE": "json", k_active: {k_version: 3, "Schema_Content": "{}"}},
    }
    update = parse_schema_update(json.dumps(body).encode())
    assert update == SchemaUpdate("init", SchemaInit("s", "json", 3, "", "{}", ""))


@pytest.mark.parametrize(
    "body",
    [b"", b"x", b"[]", b'{"UpdateType":3}', b'{"UpdateType":true,"init":{}}', b'{"init":{}}',
     b'{"UpdateType":1,"init":{"schema_name":5,"type":"json"}}', b'{"UpdateType":1,"init":[]}'],
)  # fmt: skip
def test_schema_update_ignored(body: bytes) -> None:
    assert parse_schema_update(body) is None


def test_parse_schema_init_errors() -> None:
    assert parse_schema_init(None) is None
    with pytest.raises(ValueError):
        parse_schema_init("x")
    with pytest.raises(ValueError):
        parse_schema_init({"schema_name": "s", "type": "json", "active_version": 3})


# ------------------------------------------------------------------------------ plain


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_serialize_plain() -> None:
    assert serialize_plain(b"ab") == b"ab"
    assert serialize_plain(bytearray(b"ab")) == b"ab"
    assert serialize_plain(memoryview(b"ab")) == b"ab"
    # / memphis-py: a str is sent as its UTF-8 text (Go would JSON-quote it).
    assert serialize_plain("héllo") == "héllo".encode()
    assert serialize_plain({"a": 1, "b": [1, "é"]}) == '{"a":1,"b":[1,"é"]}'.encode()
    assert serialize_plain([1, 2]) == b"[1,2]"
    assert serialize_plain(Point(1, 2)) == b'{"x":1,"y":2}'


@pytest.mark.parametrize("message", [1, 1.5, None, object(), Point, {1, 2}])
def test_serialize_plain_unsupported(message: object) -> None:
    # Field report: a set, an int or None gave a bare "unsupported message type" schema error.
    # It is a TypeError now that names the type (and still a MemphisSchemaError).
    name = type(message).__name__
    with pytest.raises(MessageTypeError, match=rf"^unsupported message type {name}: ") as info:
        serialize_plain(message)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, MemphisSchemaError)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"a": {1, 2}}, "unsupported value type set at ['a']: "),
        (
            {"x": [1, {"when": datetime(2026, 1, 1)}]},
            "unsupported value type datetime at ['x'][1]['when']: ",
        ),
        ({(1, 2): "v"}, "unsupported value type tuple at key (1, 2) of the message: "),
        ([1, object()], "unsupported value type object at [1]: "),
    ],
)
def test_serialize_plain_names_the_type_and_key_json_cannot_encode(
    message: object, text: str
) -> None:
    # Report: a set or a datetime inside a dict gave MemphisSchemaError "Bad JSON format",
    # while object() as the message gave MessageTypeError; now both are MessageTypeError, and
    # the text says where the value is.
    with pytest.raises(MessageTypeError) as info:
        serialize_plain(message)
    assert str(info.value).startswith(text)
    assert isinstance(info.value, TypeError)


def test_serialize_plain_circular_json() -> None:
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(MemphisSchemaError, match=r"^Bad JSON format - "):
        serialize_plain(looped)


def test_serialize_plain_proto(proto3: tuple[Schema, Any]) -> None:
    _, cls = proto3
    msg = cls(field1="a", field3=7)
    assert serialize_plain(msg) == msg.SerializeToString()


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=15,
).filter(lambda v: isinstance(v, dict | list)))  # fmt: skip
def test_plain_json_roundtrip(value: Any) -> None:
    assert json.loads(serialize_plain(value)) == value


# ------------------------------------------------------------------------------ protobuf


def test_protobuf_message_object(proto3: tuple[Schema, Any]) -> None:
    schema, cls = proto3
    msg = cls(field1="hello", field2="x", field3=42)
    data = schema.serialize(msg)
    assert data == msg.SerializeToString()
    back = schema.deserialize(data)
    assert (back.field1, back.field2, back.field3) == ("hello", "x", 42)  # type: ignore[attr-defined]


def test_protobuf_bytes_and_dict(proto3: tuple[Schema, Any]) -> None:
    schema, cls = proto3
    raw = cls(field1="a", field3=1).SerializeToString()
    assert schema.serialize(raw) == raw
    assert schema.serialize(bytearray(raw)) == raw
    from_dict = schema.serialize({"field1": "a", "field3": 1})
    assert cls.FromString(from_dict) == cls(field1="a", field3=1)


def test_protobuf_invalid(proto3: tuple[Schema, Any]) -> None:
    schema, _ = proto3
    err = failure(schema, b"\xff\xff\xff")
    assert err.validation_error == "invalid message format, expecting protobuf"
    assert err.data == b"\xff\xff\xff"
    assert failure(schema, "text").validation_error == "unsupported message type"
    assert failure(schema, 12).validation_error == "unsupported message type"
    assert failure(schema, {"nope": 1}).validation_error  # protobuf JSON parse error text
    with pytest.raises(MemphisSchemaError, match="^" + DESER):
        schema.deserialize(b"\xff\xff\xff")


def test_proto2_required(proto2: tuple[Schema, Any]) -> None:
    schema, cls = proto2
    ok = cls(field1="a", field3=5)
    assert schema.serialize(ok) == ok.SerializeToString()
    missing = cls(field1="a").SerializePartialToString()
    assert "required" in failure(schema, missing).validation_error


def test_protobuf_descriptor_file_naming(tmp_path: Path, proto3: tuple[Schema, Any]) -> None:
    # docs/protocol.md §8.7: the message is looked up in <schema_name>_<version_number>.proto; if
    # that
    # file is absent (broker quirk for later versions) the other files are searched.
    _, cls = proto3
    desc = protoc_descriptor(tmp_path, (SCHEMAS / "test3.proto").read_text(), "test3", 1)
    other_version = make("protobuf", name="test3", version_number=2, descriptor=desc,
                         message_struct_name="Test3")  # fmt: skip
    assert other_version.serialize(cls(field1="z")) == cls(field1="z").SerializeToString()
    wrong_message = make("protobuf", name="test3", version_number=1, descriptor=desc,
                         message_struct_name="Nope")  # fmt: skip
    assert "Nope" in failure(wrong_message, b"").validation_error


def test_protobuf_well_known_import(tmp_path: Path) -> None:
    source = (
        'syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\n'
        "message Event { string name = 1; google.protobuf.Timestamp at = 2; }\n"
    )
    desc = protoc_descriptor(tmp_path, source, "event", 1)
    schema = make("protobuf", name="event", version_number=1, descriptor=desc,
                  message_struct_name="Event")  # fmt: skip
    data = schema.serialize({"name": "n", "at": "2024-01-01T00:00:00Z"})
    assert schema.deserialize(data).at.seconds == 1704067200  # type: ignore[attr-defined]


@pytest.mark.parametrize("descriptor", ["", "!!!notbase64", base64.b64encode(b"\xff\x01").decode()])
def test_protobuf_bad_descriptor(descriptor: str) -> None:
    schema = make("protobuf", descriptor=descriptor, message_struct_name="X")
    first = failure(schema, b"")
    assert "descriptor" in first.validation_error
    assert schema._compile_error == first.validation_error  # remembered, not recompiled
    assert str(failure(schema, b"")) == str(first)


# ------------------------------------------------------------------------------ JSON schema


def test_json_schema() -> None:
    schema = json_schema()
    assert schema.serialize({"locality": "Paris", "region": "IDF"}) == (
        b'{"locality":"Paris","region":"IDF"}'
    )
    raw = b'{ "locality" : "Rome" }'
    assert schema.serialize(raw) == raw  # bytes are sent as given
    assert schema.serialize('{"locality":"x"}') == b'{"locality":"x"}'
    assert "locality" in failure(schema, {"region": "x"}).validation_error
    assert "locality" in failure(schema, {"locality": 5}).validation_error
    bad = failure(schema, b"{not json")
    assert bad.validation_error.startswith("Bad JSON format - ")
    assert bad.data == b"{not json"
    assert failure(schema, 3).validation_error == "unsupported message type"


def test_json_schema_dataclass() -> None:
    @dataclasses.dataclass
    class Address:
        locality: str

    assert json_schema().serialize(Address("Oslo")) == b'{"locality":"Oslo"}'


def test_json_schema_deserialize() -> None:
    schema = json_schema()
    assert schema.deserialize(b'{"locality":"x"}') == {"locality": "x"}
    with pytest.raises(MemphisSchemaError, match="^" + DESER + ".*locality"):
        schema.deserialize(b"{}")
    with pytest.raises(MemphisSchemaError, match="^" + DESER + "Bad JSON format - "):
        schema.deserialize(b"{")


def test_json_schema_draft_2020_default() -> None:
    # prefixItems exists only from draft 2020-12 on (docs/protocol.md §8.8: the Go default draft).
    schema = make("json", json.dumps({"type": "array", "prefixItems": [{"type": "integer"}]}))
    assert schema.serialize([1, "a"]) == b'[1,"a"]'
    assert failure(schema, ["a"]).validation_error


def test_json_schema_invalid_schema() -> None:
    assert "invalid json schema" in failure(make("json", "{"), {}).validation_error
    assert "invalid json schema" in failure(make("json", '{"type": 5}'), {}).validation_error


@settings(max_examples=50)
@given(st.text(max_size=20), st.dictionaries(st.sampled_from(["region", "street_address"]),
                                            st.text(max_size=10)))  # fmt: skip
def test_json_roundtrip(locality: str, extra: dict[str, str]) -> None:
    schema = json_schema()
    value = {"locality": locality, **extra}
    assert schema.deserialize(schema.serialize(value)) == value


# ------------------------------------------------------------------------------ Avro

STUDENT = {"username": "ada", "age": 36, "phone": 5551234567, "country": "UK"}


def test_avro_sent_as_json() -> None:
    schema = avro_schema()
    data = schema.serialize(STUDENT)
    assert json.loads(data) == STUDENT
    assert schema.serialize(json.dumps(STUDENT).encode()) == json.dumps(STUDENT).encode()
    assert schema.deserialize(data) == STUDENT


def test_avro_invalid() -> None:
    schema = avro_schema()
    assert "age" in failure(schema, {**STUDENT, "age": "old"}).validation_error
    assert failure(schema, {"username": "x"}).validation_error
    assert failure(schema, b"\x00avro").validation_error.startswith("Bad Avro format - ")
    assert failure(schema, 1.5).validation_error == "unsupported message type"
    with pytest.raises(MemphisSchemaError, match="^" + DESER + "Bad Avro format - "):
        schema.deserialize(b"nope")
    assert "invalid Avro schema" in failure(make("avro", '{"type":"nope"}'), {}).validation_error


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"type": "recrd", "name": "order"}', "unknown type 'recrd' in 'order'"),
        ('{"type": "record", "fields": []}', '"name" is a required field missing from the schema'),
        ('{"type": "record", "name": "o", "fields": [{"name": "id", "type": "strin"}]}',
         "unknown type 'strin'"),
        ("{nope", "not JSON: "),
    ],
)  # fmt: skip
def test_avro_schema_problem_says_what_is_wrong_without_the_whole_schema(
    text: str, problem: str
) -> None:
    found = avro_schema_problem(text)
    assert found is not None
    assert found.startswith(problem)
    assert "{" not in found.removeprefix(problem)  # fastavro's repr of the schema is cut off
    assert avro_schema_problem((SCHEMAS / "test.avsc").read_text()) is None


# ------------------------------------------------------------------------------ GraphQL


def test_graphql() -> None:
    import graphql

    schema = graphql_schema()
    query = "query { greeting students { firstName age } }"
    assert schema.serialize(query) == query.encode()
    assert schema.serialize(query.encode()) == query.encode()
    document = graphql.parse(query)
    assert schema.serialize(document) == query.encode()
    assert schema.deserialize(query.encode()) == query


def test_graphql_invalid() -> None:
    schema = graphql_schema()
    assert failure(schema, "query {").validation_error == (
        "invalid message format, expecting GraphQL"
    )
    assert "nope" in failure(schema, "query { nope }").validation_error
    assert failure(schema, b"\xff").validation_error == "invalid message format, expecting GraphQL"
    assert failure(schema, {"q": 1}).validation_error == "unsupported message type"
    with pytest.raises(MemphisSchemaError, match="^" + DESER):
        schema.deserialize(b"{ nope }")
    assert "invalid GraphQL schema" in failure(make("graphql", "type {"), "{a}").validation_error


def test_unknown_schema_type() -> None:
    assert failure(make("xml"), b"x").validation_error == "invalid schema type"


# ------------------------------------------------------------------------------ reports


def test_schemaverse_dls_body() -> None:
    body = schemaverse_dls_body(
        "orders#eu",
        producer_name="web",
        connection_id="c1",
        data=b"\x01\xab",
        headers=[("$memphis_connectionId", "c1"), ("$memphis_producedBy", "web"), ("k", "a"),
                 ("k", "b")],
        validation_error="bad",
    )  # fmt: skip
    assert body == (
        b'{"station_name":"orders#eu","producer":{"name":"web","connection_id":"c1"},'
        b'"message":{"size":0,"data":"01ab","headers":{"$memphis_connectionId":"c1",'
        b'"$memphis_producedBy":"web","k":"a b"}},"validation_error":"bad"}'
    )


def test_notification_bodies() -> None:
    assert notification_body("T", "M", "C", "X") == b'{"Title":"T","Msg":"M","Code":"C","Type":"X"}'
    body = json.loads(
        schema_failure_notification_body("Orders", producer_name="web", error="e", data=b"\xffhi")
    )
    assert body == {
        "Title": "Schema validation has failed",
        "Msg": "Station: Orders\nProducer: web\nError: e",
        "Code": "\ufffdhi",
        "Type": "schema_validation_fail_alert",
    }


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["field1", "field2", "field3", "x"]), _json_values)
       | _json_values | st.binary(max_size=40))  # fmt: skip
def test_any_input_validates_or_fails_cleanly(
    proto2: tuple[Schema, Any], proto3: tuple[Schema, Any], message: object
) -> None:
    # Whatever the user passes, every schema type either returns bytes or raises
    # SchemaValidationError: never another exception.
    schemas = [json_schema(), avro_schema(), graphql_schema(), proto2[0], proto3[0]]
    for schema in schemas:
        with contextlib.suppress(SchemaValidationError):
            assert isinstance(schema.serialize(message), bytes)
        with contextlib.suppress(MemphisSchemaError):
            schema.deserialize(message if isinstance(message, bytes) else b"{}")
