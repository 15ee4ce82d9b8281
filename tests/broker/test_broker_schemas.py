"""Schemaverse (docs/protocol.md §8.5-docs/protocol.md §4, §8) through plain NATS requests."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from memphis_broker._schemas import EMPTY_SCHEMA_UPDATE
from tests.support.control_client import Body, Client

Run = Callable[[Body], None]

PROTO = 'syntax = "proto3";\npackage shop;\nmessage Order { string id = 1; int32 qty = 2; }\n'
PROTO2 = PROTO + "message Extra { bool ok = 1; }\n"
JSON_SCHEMA = json.dumps({"type": "object", "properties": {"id": {"type": "string"}}})
AVRO = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]})
GRAPHQL = "type Query { order(id: ID!): Order }\ntype Order { id: ID! }\n"


def _schema(name: str, stype: str, content: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "type": stype,
        "created_by_username": "root",
        "schema_content": content,
        "message_struct_name": "",
    }
    body.update(extra)
    return body


async def _create(c: Client, name: str, stype: str, content: str) -> str:
    reply = await c.json("$memphis_schema_creations", _schema(name, stype, content))
    assert set(reply) == {"error"}
    return str(reply["error"])


async def _attach(c: Client, schema: str, station: str) -> str:
    return await c.text(
        "$memphis_schema_attachments",
        {"name": schema, "station_name": station, "username": "root"},
    )


@pytest.mark.parametrize(
    ("stype", "content"),
    [("protobuf", PROTO), ("json", JSON_SCHEMA), ("avro", AVRO), ("graphql", GRAPHQL)],
)
def test_valid_schemas_are_created(run: Run, name: str, stype: str, content: str) -> None:
    async def body(c: Client) -> None:
        assert await _create(c, name, stype, content) == ""
        assert await _create(c, name, stype, content) == (
            f"{name} already exists in the db with the same schema content"
        )

    run(body)


@pytest.mark.parametrize(
    ("stype", "content", "prefix"),
    [
        ("protobuf", "", "your schema content is invalid"),
        ("protobuf", "message {", "your Proto file is invalid: "),
        (
            "protobuf",
            'syntax = "proto3";\n',
            "message struct name is required when schema type is Protobuf",
        ),
        # The real broker's prefix, then where (field report: "no location given").
        ("json", "{not json", "your json schema is invalid: line 1, column 2: "),
        ("json", '{"type": 12}', "your json schema is invalid: at /type: "),
        ("json", "[1, 2]", "your json schema is invalid: the top level must be "),
        ("avro", '{"type": "record"}', "your Avro file is invalid: "),
        ("avro", "nope", "your Avro file is invalid: "),
        ("graphql", "type {", "Syntax Error"),
        ("xml", "<a/>", "unsupported schema type"),
    ],
)
def test_invalid_content(run: Run, name: str, stype: str, content: str, prefix: str) -> None:
    async def body(c: Client) -> None:
        err = await _create(c, name, stype, content)
        assert err.startswith(prefix), err
        if prefix.endswith(": "):
            assert len(err) > len(prefix)  # the parser's own message follows
        assert not [r for r in await c.rows("schemas") if r["name"] == name]

    run(body)


def test_protobuf_descriptor_and_versions(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await _create(c, name, "protobuf", PROTO) == ""
        assert await _create(c, name, "protobuf", PROTO2) == ""
        assert await _create(c, name, "json", JSON_SCHEMA) == (
            f"{name} already exist with type - protobuf"
        )
        (doc,) = [r for r in await c.rows("schemas") if r["name"] == name]
        v1, v2 = doc["versions"]
        assert (v1["version_number"], v1["active"]) == (1, True)
        assert (v2["version_number"], v2["active"]) == (2, False)  # SDK versions are inactive
        # the first message (docs/protocol.md §8.3 step 2)
        assert v1["message_struct_name"] == "Order"
        for v in (v1, v2):
            fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(v["descriptor"]))
            # docs/protocol.md §8.4: the Go SDK finds the file by this name (quirk fixed: the real
            # version number)
            assert [f.name for f in fds.file] == [f"{name}_{v['version_number']}.proto"]
            assert fds.file[0].package == "shop"

    run(body)


def test_schema_name_rules_apply(run: Run) -> None:
    async def body(c: Client) -> None:
        assert await _create(c, "", "json", JSON_SCHEMA) == "Schema name can not be empty"
        assert await _create(c, "x" * 300, "json", JSON_SCHEMA) == (
            "Schema should be under 128 characters"
        )

    run(body)


def test_attach_pushes_init_and_replies_carry_the_schema(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        assert await _create(c, name, "protobuf", PROTO) == ""
        updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on(msg: Any) -> None:
            updates.put_nowait(json.loads(msg.data))

        await c.nc.subscribe(f"$memphis_schema_updates_{name}", cb=on)
        await c.nc.flush()
        assert await _attach(c, name.upper(), name) == ""
        update = await asyncio.wait_for(updates.get(), 10)
        assert update["UpdateType"] == 1
        init = update["init"]
        assert init["schema_name"] == name
        assert init["type"] == "protobuf"
        assert init["active_version"]["version_number"] == 1
        assert init["active_version"]["message_struct_name"] == "Order"
        assert init["active_version"]["schema_content"] == PROTO
        reply = await c.create_producer(name, "p")
        assert reply["schema_update"] == init
        consumer = json.loads(await c.create_consumer(name, "c"))
        assert consumer["schema_update"] == init
        # a new (inactive) version is not pushed and replies keep the active one (docs/protocol.md
        # §8.5)
        assert await _create(c, name, "protobuf", PROTO2) == ""
        assert (await c.create_producer(name, "p"))["schema_update"] == init

        detach = {"station_name": name, "username": "root"}
        assert await c.text("$memphis_schema_detachments", detach) == ""
        drop = await asyncio.wait_for(updates.get(), 10)
        # The drop carries the zero-valued update a station without a schema replies with
        # (docs/protocol.md §4.2; its bytes are checked in test_broker_clients.py).
        assert drop == {"UpdateType": 2, "init": EMPTY_SCHEMA_UPDATE}
        assert (await c.create_producer(name, "p"))["schema_update"]["schema_name"] == ""

    run(body)


def test_attach_and_detach_errors(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await _attach(c, "nothing", name) == f"memphis: Station {name} does not exist"
        assert await _attach(c, "x", "Bad Name") == (
            "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"
        )
        assert await c.create_station(name) == ""
        assert await _attach(c, "no-such", name) == "Schema no-such does not exist"
        detach = {"station_name": f"{name}-gone", "username": "root"}
        assert await c.text("$memphis_schema_detachments", detach) == (
            f"station {name}-gone does not exist"
        )
        assert (await c.text("$memphis_schema_attachments", b"{")).startswith(
            "failed attaching schema "
        )

    run(body)


def test_station_created_with_schema(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await _create(c, name, "json", JSON_SCHEMA) == ""
        assert await c.create_station(name, schema_name=name.upper()) == ""
        reply = await c.create_producer(name, "p")
        assert reply["schema_update"]["schema_name"] == name
        assert reply["schema_update"]["type"] == "json"
        assert reply["schema_update"]["active_version"]["schema_content"] == JSON_SCHEMA

    run(body)
