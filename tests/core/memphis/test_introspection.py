"""Introspection plans, bytes in and results out: the requests each query writes and how the
JetStream replies become ``ConsumerInfo`` / ``StationInfo`` / ``SchemaInfo``."""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memphis_core import (
    DlsSettings,
    LocalProtocolError,
    MemphisError,
    PermissionsViolationError,
    RemoteProtocolError,
    RequestTimeoutError,
    ServerError,
    StationNotFoundError,
)
from memphis_core.memphis._introspection import (
    QUERY_TIMEOUT,
    Plan,
    Reply,
    consumer_info_plan,
    schemas_plan,
    station_info_plan,
    stations_plan,
)
from tests.support.scripted_broker import Script, Sent

T = TypeVar("T")

NOT_FOUND: dict[str, object] = {
    "error": {"code": 404, "err_code": 10059, "description": "stream not found"}
}
NO_MSG: dict[str, object] = {
    "error": {"code": 404, "err_code": 10037, "description": "no message found"}
}


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _stream(name: str, messages: int = 0, **config: Any) -> dict[str, Any]:
    return {
        "config": {
            "name": name,
            "subjects": [f"{name}.>"],
            "retention": "limits",
            "max_age": 3600 * 10**9,
            "max_msgs": -1,
            "max_bytes": -1,
            "storage": "file",
            "num_replicas": 1,
            "duplicate_window": 120 * 10**9,
            **config,
        },
        "state": {
            "messages": messages,
            "bytes": 10 * messages,
            "first_seq": 1,
            "last_seq": messages,
        },
    }


def _kv(doc: object | None, deleted: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"subject": "$KV.x.y", "seq": 1}
    if deleted:
        message["hdrs"] = base64.b64encode(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n").decode()
    else:
        message["data"] = base64.b64encode(_json(doc)).decode()
    return {"message": message}


def _run(plan: Plan[T], answer: Any) -> T:
    """Drive ``plan``: ``answer(subject, body)`` gives each request's reply document."""
    batch = next(plan)
    while True:
        replies: list[Reply] = [_json(answer(subject, body)) for subject, body in batch]
        try:
            batch = plan.send(replies)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _consumer(num_pending: int, ack_pending: int, redelivered: int = 0) -> dict[str, Any]:
    return {
        "num_pending": num_pending,
        "num_ack_pending": ack_pending,
        "num_redelivered": redelivered,
        "num_waiting": 1,
        "delivered": {"stream_seq": 7},
        "ack_floor": {"stream_seq": 5},
    }


def test_consumer_info_sums_the_partitions() -> None:
    asked: list[str] = []

    def answer(subject: str, body: bytes) -> object:
        asked.append(subject)
        return _consumer(3, 2, 1) if subject.endswith("$1.grp") else _consumer(4, 0)

    info = _run(consumer_info_plan("Orders", "orders", (1, 2), "grp", "grp"), answer)
    assert asked == [
        "$JS.API.CONSUMER.INFO.orders$1.grp",
        "$JS.API.CONSUMER.INFO.orders$2.grp",
    ]
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered, info.num_waiting) == (
        7,
        2,
        1,
        2,
    )
    assert [p.stream for p in info.partitions] == ["orders$1", "orders$2"]
    assert info.partitions[0].ack_floor_seq == 5


_COUNTS = st.tuples(*[st.integers(0, 2**53)] * 4)


@given(st.lists(_COUNTS, min_size=1, max_size=8))
def test_consumer_info_totals_are_the_partition_sums(counts: list[tuple[int, ...]]) -> None:
    fields = ("num_pending", "num_ack_pending", "num_redelivered", "num_waiting")
    replies = {
        f"$JS.API.CONSUMER.INFO.s${p}.g": dict(zip(fields, c, strict=True))
        for p, c in enumerate(counts, start=1)
    }
    partitions = tuple(range(1, len(counts) + 1))
    info = _run(consumer_info_plan("s", "s", partitions, "g", "g"), lambda s, b: replies[s])
    totals = (info.num_pending, info.num_ack_pending, info.num_redelivered, info.num_waiting)
    assert totals == tuple(sum(column) for column in zip(*counts, strict=True))
    assert [p.partition for p in info.partitions] == list(partitions)


def test_consumer_info_of_a_legacy_station_asks_its_one_stream() -> None:
    asked: list[str] = []

    def answer(subject: str, body: bytes) -> object:
        asked.append(subject)
        return _consumer(1, 0)

    info = _run(consumer_info_plan("old", "old", (), "g", "g"), answer)
    assert asked == ["$JS.API.CONSUMER.INFO.old.g"]
    assert info.partitions[0].partition is None


def test_consumer_info_reports_jetstream_errors() -> None:
    gone = {"error": {"code": 404, "err_code": 10014, "description": "consumer not found"}}
    with pytest.raises(MemphisError, match="consumer not found"):
        _run(consumer_info_plan("s", "s", (1,), "g", "g"), lambda s, b: gone)


def test_consumer_info_refuses_a_malformed_reply() -> None:
    with pytest.raises(RemoteProtocolError, match="num_pending"):
        _run(consumer_info_plan("s", "s", (1,), "g", "g"), lambda s, b: {"num_pending": "x"})


def test_station_info_uses_the_record_partitions_schema_and_dls() -> None:
    record = {
        "partitions": [1, 2, 3],
        "schema_name": "order",
        "dls_configuration": {"poison": False, "schemaverse": True},
        "dls_station": "dead",
    }
    asked: list[tuple[str, bytes]] = []

    def answer(subject: str, body: bytes) -> object:
        asked.append((subject, body))
        if subject.startswith("$JS.API.STREAM.MSG.GET"):
            return _kv(record)
        if subject == "$JS.API.STREAM.INFO.my#st":
            return NOT_FOUND
        if subject.startswith("$JS.API.STREAM.INFO.my#st$"):
            p = int(subject.rsplit("$", 1)[1])
            return _stream(f"my#st${p}", messages=p, max_msgs=100, max_age=0)
        return {"consumers": ["b#grp", "a"]}

    info = _run(station_info_plan("My.St"), answer)
    assert asked[0] == (
        "$JS.API.STREAM.MSG.GET.KV_memphis_stations",
        b'{"last_by_subj":"$KV.memphis_stations.my=st"}',
    )
    assert asked[-1] == ("$JS.API.CONSUMER.NAMES.my#st$1", b'{"offset":0}')
    assert info.name == "my.st"
    assert [p.partition for p in info.partitions] == [1, 2, 3]
    assert (info.messages, info.stored_bytes) == (6, 60)
    assert (info.retention_type, info.retention_value) == ("messages", 100)
    assert info.schema == "order"
    assert info.dls == DlsSettings(poison=False, schemaverse=True, dls_station="dead")
    assert info.consumer_groups == ("a", "b.grp")


def test_station_info_without_a_record_probes_partitions_one_by_one() -> None:
    existing = {"s$1", "s$2"}
    asked: list[str] = []

    def answer(subject: str, body: bytes) -> object:
        asked.append(subject)
        if subject.startswith("$JS.API.STREAM.MSG.GET"):
            return NOT_FOUND  # no memphis_stations bucket: a broker that keeps no records
        if subject.startswith("$JS.API.STREAM.INFO."):
            stream = subject.removeprefix("$JS.API.STREAM.INFO.")
            return _stream(stream, retention="interest") if stream in existing else NOT_FOUND
        return {"consumers": None}

    info = _run(station_info_plan("s"), answer)
    assert "$JS.API.STREAM.INFO.s$3" in asked
    assert "$JS.API.STREAM.INFO.s$4" not in asked
    assert len(info.partitions) == 2
    assert (info.retention_type, info.retention_value) == ("ack_based", 0)
    assert info.schema is None
    assert info.dls is None
    assert info.consumer_groups == ()


def test_station_info_of_a_legacy_station() -> None:
    def answer(subject: str, body: bytes) -> object:
        if subject == "$JS.API.STREAM.INFO.old":
            return _stream("old", messages=2)
        if subject.startswith("$JS.API.STREAM"):
            return NO_MSG if "MSG.GET" in subject else NOT_FOUND
        return {"consumers": []}

    info = _run(station_info_plan("old"), answer)
    assert [(p.stream, p.partition) for p in info.partitions] == [("old", None)]
    assert info.messages == 2


def test_station_info_of_a_missing_station() -> None:
    with pytest.raises(StationNotFoundError, match="station nope does not exist"):
        _run(station_info_plan("nope"), lambda s, b: NO_MSG if "MSG.GET" in s else NOT_FOUND)


def test_a_deleted_record_counts_as_no_record() -> None:
    def answer(subject: str, body: bytes) -> object:
        if "MSG.GET" in subject:
            return _kv(None, deleted=True)
        if subject.endswith("$1"):
            return _stream("s$1")
        return NOT_FOUND if "STREAM.INFO" in subject else {"consumers": []}

    assert _run(station_info_plan("s"), answer).schema is None


def test_stations_pages_the_stream_list_and_skips_other_streams() -> None:
    pages = [
        [_stream("a$1"), _stream("KV_memphis_stations"), _stream("a$2", messages=3)],
        [{"config": {"name": "dls", "subjects": ["$memphis_dls.>"]}}, _stream("b$1")],
    ]
    offsets: list[int] = []
    gets: list[bytes] = []

    def answer(subject: str, body: bytes) -> object:
        if subject == "$JS.API.STREAM.LIST":
            offset = json.loads(body)["offset"]
            offsets.append(offset)
            return {"total": 5, "streams": pages[0] if offset == 0 else pages[1]}
        gets.append(body)
        return _kv({"schema_name": ""})

    stations = _run(stations_plan(), answer)
    assert offsets == [0, 3]
    assert [(s.name, len(s.partitions), s.messages) for s in stations] == [
        ("a", 2, 3),
        ("b", 1, 0),
    ]
    assert len(gets) == 2


def test_schemas_reads_every_key_of_the_bucket() -> None:
    asked: list[tuple[str, bytes]] = []
    schema = {
        "name": "order",
        "type": "json",
        "created_by": "root",
        "versions": [{"version_number": 1, "active": False}, {"version_number": 2, "active": True}],
    }

    def answer(subject: str, body: bytes) -> object:
        asked.append((subject, body))
        if subject.startswith("$JS.API.STREAM.INFO"):
            return {"config": {"name": "KV_memphis_schemas"}, "state": {"subjects": {
                "$KV.memphis_schemas.order": 1, "$KV.memphis_schemas.gone": 2}}}  # fmt: skip
        return _kv(None, deleted=True) if b"gone" in body else _kv(schema)

    schemas = _run(schemas_plan(), answer)
    assert asked[0] == (
        "$JS.API.STREAM.INFO.KV_memphis_schemas",
        b'{"subjects_filter": "$KV.memphis_schemas.>"}',
    )
    assert schemas is not None
    assert [(s.name, s.type, s.versions, s.active_version) for s in schemas] == [
        ("order", "json", 2, 2)
    ]


def test_schemas_without_a_store_is_none() -> None:
    assert _run(schemas_plan(), lambda s, b: NOT_FOUND) is None


# ------------------------------------------------------------------ through the client


def _connected() -> Script:
    script = Script()
    script.connect()
    script.take()
    script.events()  # Connected
    return script


def test_client_runs_a_plan_on_its_reply_inbox() -> None:
    script = _connected()
    op = script.client.stations(script.now)
    listing = script.one("PUB", "$JS.API.STREAM.LIST")
    script.reply(listing, {"total": 1, "streams": [_stream("a$1", messages=1)]})
    record = script.one("PUB", "$JS.API.STREAM.MSG.GET")
    assert not op.done
    script.reply(record, NOT_FOUND)
    assert [s.name for s in op.outcome()] == ["a"]


def test_client_fails_a_plan_whose_request_times_out() -> None:
    script = _connected()
    op = script.client.station_info("s", script.now)
    assert len([s for s in script.take() if s.op == "PUB"]) == 3
    script.advance(QUERY_TIMEOUT + 1)
    with pytest.raises(RequestTimeoutError):
        op.outcome()


def test_client_fails_a_plan_on_a_reply_of_the_wrong_shape() -> None:
    script = _connected()
    op = script.client.stations(script.now)
    listing = script.one("PUB", "$JS.API.STREAM.LIST")
    script.reply(
        listing,
        {
            "total": 1,
            "streams": [{"config": {"name": "a$1", "subjects": ["a$1.>"]}, "state": "oops"}],
        },
    )
    script.reply(script.one("PUB", "$JS.API.STREAM.MSG.GET"), NOT_FOUND)
    with pytest.raises(RemoteProtocolError, match="unexpected JetStream reply"):
        op.outcome()


def test_client_refuses_a_bad_station_name_before_sending() -> None:
    script = _connected()
    with pytest.raises(LocalProtocolError, match="alphanumeric"):
        script.client.station_info("bad name", script.now)
    assert script.take() == []


# ------------------------------------------------------------------ an application user
# A password-mode memphis_broker refuses its application users the KV API, the control plane's
# buckets and STREAM.LIST (docs/introspection.md): nats-server answers each refused publish with
# a permissions -ERR and delivers nothing, so no reply ever comes.


def _refuse(script: Script, request: Sent) -> None:
    script.feed(f"-ERR 'Permissions Violation for Publish to \"{request.subject}\"'\r\n".encode())


def _pubs(script: Script) -> dict[str, list[Sent]]:
    found: dict[str, list[Sent]] = {}
    for sent in script.take():
        if sent.op == "PUB":
            found.setdefault(sent.subject, []).append(sent)
    return found


def test_station_info_reads_a_refused_record_as_unknown_at_once() -> None:
    script = _connected()
    op = script.client.station_info("s", script.now)
    sent = _pubs(script)
    _refuse(script, sent["$JS.API.STREAM.MSG.GET.KV_memphis_stations"][0])
    script.reply(sent["$JS.API.STREAM.INFO.s$1"][0], _stream("s$1", messages=4))
    script.reply(sent["$JS.API.STREAM.INFO.s"][0], NOT_FOUND)
    script.reply(script.one("PUB", "$JS.API.STREAM.INFO.s$2"), NOT_FOUND)
    script.reply(script.one("PUB", "$JS.API.CONSUMER.NAMES.s$1"), {"consumers": ["g"]})
    # Done without the clock moving: the -ERR answered the record's read, no timeout was needed.
    info = op.outcome()
    assert (info.schema, info.dls) == (None, None)
    assert (info.messages, info.consumer_groups) == (4, ("g",))
    # The -ERR was the query's answer, not a connection event to log or report.
    assert script.events() == []
    assert not script.client._dispatcher._refusable  # every refusable request was forgotten


def test_station_info_reads_a_record_nobody_serves_as_unknown() -> None:
    script = _connected()
    op = script.client.station_info("s", script.now)
    sent = _pubs(script)
    script.status(sent["$JS.API.STREAM.MSG.GET.KV_memphis_stations"][0], 503)
    script.reply(sent["$JS.API.STREAM.INFO.s$1"][0], _stream("s$1"))
    script.reply(sent["$JS.API.STREAM.INFO.s"][0], NOT_FOUND)
    script.reply(script.one("PUB", "$JS.API.STREAM.INFO.s$2"), NOT_FOUND)
    script.reply(script.one("PUB", "$JS.API.CONSUMER.NAMES.s$1"), {"consumers": []})
    assert op.outcome().schema is None


def test_station_info_fails_when_the_station_itself_is_refused() -> None:
    script = _connected()
    op = script.client.station_info("s", script.now)
    sent = _pubs(script)
    script.reply(sent["$JS.API.STREAM.MSG.GET.KV_memphis_stations"][0], NO_MSG)
    _refuse(script, sent["$JS.API.STREAM.INFO.s$1"][0])
    script.reply(sent["$JS.API.STREAM.INFO.s"][0], NOT_FOUND)
    with pytest.raises(PermissionsViolationError, match=r"STREAM\.INFO\.s\$1"):
        op.outcome()


def test_stations_falls_back_to_stream_names_when_the_list_is_refused() -> None:
    script = _connected()
    op = script.client.stations(script.now)
    _refuse(script, script.one("PUB", "$JS.API.STREAM.LIST"))
    names = script.one("PUB", "$JS.API.STREAM.NAMES")
    assert names.json() == {"offset": 0}
    streams = ["b$1", "KV_memphis_stations", "$memphis_dls_unacked", "a$1", "hidden", "a$2"]
    script.reply(names, {"total": len(streams), "streams": streams})
    infos = _pubs(script)
    # Only the streams that could be a station's are asked about.
    assert sorted(infos) == [f"$JS.API.STREAM.INFO.{n}" for n in ("a$1", "a$2", "b$1", "hidden")]
    for name in ("a$1", "a$2", "b$1"):
        script.reply(infos[f"$JS.API.STREAM.INFO.{name}"][0], _stream(name, messages=1))
    _refuse(script, infos["$JS.API.STREAM.INFO.hidden"][0])
    records = _pubs(script)["$JS.API.STREAM.MSG.GET.KV_memphis_stations"]
    assert len(records) == 2
    for record in records:  # two -ERRs for the same subject answer the two reads in order
        _refuse(script, record)
    stations = op.outcome()
    assert [(s.name, len(s.partitions), s.messages, s.schema) for s in stations] == [
        ("a", 2, 2, None),
        ("b", 1, 1, None),
    ]
    assert script.events() == []
    assert not script.client._dispatcher._refusable  # every refusable request was forgotten


def test_schemas_of_a_refused_store_is_none() -> None:
    script = _connected()
    op = script.client.schemas(script.now)
    _refuse(script, script.one("PUB", "$JS.API.STREAM.INFO.KV_memphis_schemas"))
    assert op.outcome() is None


def test_schemas_with_no_responders_is_none() -> None:
    script = _connected()
    op = script.client.schemas(script.now)
    script.status(script.one("PUB", "$JS.API.STREAM.INFO.KV_memphis_schemas"), 503)
    assert op.outcome() is None


def test_a_permissions_error_for_no_query_is_still_reported() -> None:
    script = _connected()
    script.feed(b"-ERR 'Permissions Violation for Publish to \"elsewhere\"'\r\n")
    events = script.events()
    assert [type(e) for e in events] == [ServerError]
