"""Option validation and defaults ; docs/protocol.md §1, §6)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memphis_core import LocalProtocolError, MemphisHeaderError
from memphis_core.memphis import _options
from memphis_core.memphis._enums import RetentionType, SchemaType, StorageType, coerce_enum
from memphis_core.memphis._names import is_user_header
from memphis_core.memphis._options import (
    DEFAULT_ACK_WAIT,
    TLS,
    ConnectOptions,
    connect_options,
    consumer_options,
    fetch_consumer_options,
    fetch_messages_options,
    fetch_options,
    normalize_headers,
    produce_options,
    producer_options,
    station_options,
)
from memphis_core.nats._headers import Headers

AUTH = "you have to connect with one of the following methods: connection token / password"


def exact(text: str) -> str:
    return "^" + re.escape(text) + "$"


# ------------------------------------------------------------------------------------ enums


@pytest.mark.parametrize(
    ("enum_type", "value", "member"),
    [
        (RetentionType, "message_age_sec", RetentionType.MAX_MESSAGE_AGE_SECONDS),
        (RetentionType, "Messages", RetentionType.MESSAGES),
        (RetentionType, RetentionType.ACK_BASED, RetentionType.ACK_BASED),
        (StorageType, "file", StorageType.DISK),
        (StorageType, "MEMORY", StorageType.MEMORY),
        (SchemaType, "avro", SchemaType.AVRO),
    ],
)
def test_coerce_enum(enum_type: type, value: object, member: object) -> None:
    assert coerce_enum(enum_type, value) is member


def test_enum_values_are_wire_values() -> None:
    assert [m.value for m in RetentionType] == ["message_age_sec", "messages", "bytes", "ack_based"]
    assert [m.value for m in StorageType] == ["file", "memory"]
    assert [m.value for m in SchemaType] == ["protobuf", "json", "graphql", "avro"]
    assert str(RetentionType.MESSAGES) == "messages"
    assert json.dumps([StorageType.DISK]) == '["file"]'  # wire value, no extra work


@pytest.mark.parametrize(
    ("enum_type", "text"),
    [
        (
            RetentionType,
            "retention type can be one of the following message_age_sec/messages/bytes/ack_based",
        ),
        (StorageType, "storage type can be one of the following file/memory"),
        (
            SchemaType,
            "unsupported schema type, it can be one of the following protobuf/json/graphql/avro",
        ),
    ],
)
@pytest.mark.parametrize("bad", ["nope", "", 3, None, StorageType.DISK])
def test_coerce_enum_unknown(enum_type: type, text: str, bad: object) -> None:
    if enum_type is StorageType and bad is StorageType.DISK:
        return
    with pytest.raises(LocalProtocolError, match=exact(text)):
        coerce_enum(enum_type, bad)


# ------------------------------------------------------------------------------------ connect


def test_connect_defaults() -> None:
    opts = connect_options("localhost", "root", connection_token="memphis")
    assert opts == ConnectOptions(
        host="localhost",
        username="root",
        connection_token="memphis",
        password=None,
        account_id=1,
        port=6666,
        reconnect=True,
        max_reconnect=10,
        reconnect_interval=1.0,
        timeout=15.0,
        tls=None,
    )
    assert opts.server == "localhost:6666"
    assert "memphis" not in repr(opts)  # the token stays out of logs


def test_connect_password_user() -> None:
    opts = connect_options("h", "app", password="pw", account_id=7)
    assert opts.password == "pw"
    assert opts.connection_token is None
    assert opts.nats_user == "app$7"


@pytest.mark.parametrize(
    ("token", "password"), [(None, None), ("", ""), ("t", "p"), ("", None), (None, "")]
)
def test_connect_needs_exactly_one_auth(token: str | None, password: str | None) -> None:
    # The Go SDK's text, then which of the two mistakes it was (field report: both and neither
    # read the same).
    which = "both" if token and password else "neither"
    with pytest.raises(LocalProtocolError, match=f"^{re.escape(AUTH)}: {which} ") as info:
        connect_options("h", "u", connection_token=token, password=password)
    assert str(info.value).startswith(AUTH)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://broker", "broker"),
        ("https://broker", "broker"),
        ("broker", "broker"),
        ("xhttp://broker", "xhttp://broker"),  # anchored at the start only
        ("https://http://b", "http://b"),  # stripped once
    ],
)
def test_connect_host_scheme_stripped(given: str, expected: str) -> None:
    assert connect_options(given, "u", password="p").host == expected


def test_connect_empty_host_after_strip() -> None:
    with pytest.raises(LocalProtocolError):
        connect_options("https://", "u", password="p")


@pytest.mark.parametrize(
    ("tls", "text"),
    [
        (TLS("", "k", "c"), "must provide a TLS cert file"),
        (TLS("c", "", ""), "must provide a TLS key file"),
        (TLS("c", "k", ""), "must provide a TLS ca file"),
    ],
)
def test_connect_tls_all_three(tls: TLS, text: str) -> None:
    with pytest.raises(LocalProtocolError, match=exact(text)):
        connect_options("h", "u", password="p", tls=tls)


def test_connect_tls_ok_and_empty() -> None:
    assert connect_options("h", "u", password="p", tls=TLS("c", "k", "a")).tls == TLS("c", "k", "a")
    assert connect_options("h", "u", password="p", tls=TLS()).tls is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 70000},
        {"port": "6666"},
        {"port": True},
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": float("nan")},
        {"reconnect_interval": -0.5},
        {"max_reconnect": -2},
        {"account_id": -1},
        {"reconnect": 1},
    ],
)
def test_connect_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        connect_options("h", "u", password="p", **kwargs)  # type: ignore[arg-type]


def test_connect_no_reconnect_forces_zero() -> None:
    assert connect_options("h", "u", password="p", reconnect=False).max_reconnect == 0
    assert connect_options("h", "u", password="p", max_reconnect=-1).max_reconnect == -1
    assert connect_options("h", "u", password="p", timeout=2).timeout == 2.0


def test_options_are_frozen() -> None:
    opts = connect_options("h", "u", password="p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.port = 1  # type: ignore[misc]


# ------------------------------------------------------------------------------------ stations


def test_station_defaults() -> None:
    opts = station_options("Orders.EU")
    assert opts.retention_type is RetentionType.MAX_MESSAGE_AGE_SECONDS
    assert opts.retention_value == 3600
    assert opts.storage_type is StorageType.DISK
    assert (opts.replicas, opts.idempotency_window, opts.idempotency_window_ms) == (
        1,
        120.0,
        120000,
    )
    assert (opts.schema_name, opts.dls_station, opts.partitions_number) == ("", "", 1)
    assert opts.send_poison_msg_to_dls
    assert opts.send_schema_failed_msg_to_dls
    assert not opts.tiered_storage_enabled
    assert opts.name == "Orders.EU"  # sent as given
    assert opts.internal_name == "orders#eu"


def test_station_plain_strings() -> None:
    opts = station_options("s", retention_type="messages", storage_type="memory")
    assert opts.retention_type is RetentionType.MESSAGES
    assert opts.storage_type is StorageType.MEMORY


def test_station_zero_partitions_means_one() -> None:
    assert station_options("s", partitions_number=0).partitions_number == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("", "Station name can not be empty"),
        ("a" * 129, "Station should be under 128 characters"),
        ("a b", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("_a", "Station name can not start or end with non alphanumeric character"),
    ],
)
def test_station_name_errors(name: str, text: str) -> None:
    with pytest.raises(LocalProtocolError, match=exact(text)):
        station_options(name)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"partitions_number": -1},
            "cannot create station with -1 partitions (max:10000 min:1): Station -  s, ",
        ),
        (
            {"partitions_number": 10001},
            "cannot create station with 10001 partitions (max:10000 min:1): Station -  s, ",
        ),
        ({"idempotency_window": 86400.5}, "idempotency window can not exceed 24 hours"),
        ({"retention_value": -1}, "retention value can not be negative"),
        ({"replicas": 0}, "replicas must be 1 or more"),
        (
            {"storage_type": "disk"},
            "storage type can be one of the following file/memory",
        ),
    ],
)
def test_station_bad_values(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(LocalProtocolError, match=exact(text)):
        station_options("s", **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ producers


def test_producer_name_lowercased() -> None:
    opts = producer_options("Orders.EU", "Web-1")
    assert (opts.station_name, opts.name, opts.internal_station) == (
        "Orders.EU",
        "web-1",
        "orders#eu",
    )


def test_producer_name_error() -> None:
    with pytest.raises(LocalProtocolError, match=exact("Producer name can not be empty")):
        producer_options("s", "")


def test_produce_defaults() -> None:
    opts = produce_options()
    assert (opts.ack_wait, opts.headers, opts.async_produce) == (15.0, (), False)
    assert (opts.msg_id, opts.partition_key, opts.partition_number) == (None, None, None)


@pytest.mark.parametrize("async_produce", [False, True])
def test_a_produce_without_options_gets_what_the_checked_path_gives(async_produce: bool) -> None:
    # The call without options skips the checks and returns a value shared by every such
    # produce: it must be the checked path's answer, and nobody may change it.
    shared = produce_options(async_produce=async_produce)
    assert shared == produce_options(async_produce=async_produce, ack_wait=DEFAULT_ACK_WAIT)
    assert produce_options(async_produce=async_produce) is shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        shared.ack_wait = 1.0  # type: ignore[misc]
    # A value that is not exactly a bool still goes through the check.
    with pytest.raises(LocalProtocolError, match="async_produce"):
        produce_options(async_produce=int(async_produce))  # type: ignore[arg-type]


@pytest.mark.parametrize("ack_wait", [15.0, 15, 3.5])
def test_produce_plain_options_are_checked_whatever_their_value(ack_wait: float) -> None:
    # No path keyed on the default's literal: any ack_wait gets the same checks and result.
    opts = produce_options(ack_wait=ack_wait, async_produce=True)
    assert (opts.ack_wait, opts.async_produce, opts.headers) == (ack_wait, True, ())
    with pytest.raises(LocalProtocolError, match="async_produce"):
        produce_options(ack_wait=ack_wait, async_produce="yes")  # type: ignore[arg-type]


def test_produce_headers_dict_and_headers() -> None:
    assert produce_options(headers={"K": "v", "a": "b"}).headers == (("K", "v"), ("a", "b"))
    h = Headers()
    h.add("k", "1")
    h.add("k", "2")
    assert produce_options(headers=h).headers == (("k", "1"), ("k", "2"))
    assert normalize_headers([("x", "y")]) == (("x", "y"),)


@pytest.mark.parametrize(
    "headers",
    [{"$memphis_connectionId": "x"}, [("$memphis", "1")], {"$memphisX": "y"}],
)
def test_produce_reserved_headers(headers: dict[str, str]) -> None:
    with pytest.raises(
        MemphisHeaderError, match=exact("keys in headers should not start with $memphis")
    ):
        produce_options(headers=headers)


@pytest.mark.parametrize(
    "headers",
    [{"": "v"}, {"a b": "v"}, {"a:b": "v"}, {"k": "v\r\nX: y"}, {"k": 1}, {1: "v"}, "k=v"],
)
def test_produce_bad_headers(headers: object) -> None:
    with pytest.raises(MemphisHeaderError):
        produce_options(headers=headers)  # type: ignore[arg-type]


@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
            min_size=1,
            max_size=10,
        ).filter(lambda k: not k.startswith("$memphis") and is_user_header(k)),
        st.text(max_size=20).filter(lambda v: "\r" not in v and "\n" not in v),
        max_size=5,
    )
)
def test_headers_roundtrip(headers: dict[str, str]) -> None:
    pairs = normalize_headers(headers)
    assert dict(pairs) == headers
    assert normalize_headers(pairs) == pairs


def test_msg_id() -> None:
    assert produce_options(msg_id="42").msg_id == "42"
    with pytest.raises(LocalProtocolError, match=exact("msg id can not be empty")):
        produce_options(msg_id="")
    with pytest.raises(LocalProtocolError):
        produce_options(msg_id=42)  # type: ignore[arg-type]


def test_produce_partition_options() -> None:
    with pytest.raises(
        LocalProtocolError, match=exact("Can not use both partition number and partition key")
    ):
        produce_options(partition_key="k", partition_number=1)
    with pytest.raises(LocalProtocolError, match=exact("Partition number is out of range")):
        produce_options(partition_number=0)
    # Go's unset key is "": "" plus a number is not a conflict.
    assert produce_options(partition_key="", partition_number=2).partition_key is None
    assert produce_options(partition_key="k").partition_key == "k"


@pytest.mark.parametrize("ack_wait", [0, -1, "15", None])
def test_produce_ack_wait(ack_wait: object) -> None:
    with pytest.raises(LocalProtocolError):
        produce_options(ack_wait=ack_wait)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ consumers


def test_consumer_defaults() -> None:
    opts = consumer_options("Orders", "Billing.A")
    assert opts.consumer_group == "Billing.A"  # "" -> the name as given
    assert opts.internal_group == "billing#a"
    assert opts.internal_station == "orders"
    assert (opts.pull_interval, opts.batch_size, opts.batch_max_wait_time) == (1.0, 10, 5.0)
    assert (opts.max_ack_time, opts.max_ack_time_ms, opts.max_msg_deliveries) == (30.0, 30000, 10)
    assert (opts.start_consume_from_seq, opts.last_messages) == (1, -1)


def test_consumer_group_given() -> None:
    assert consumer_options("s", "c", consumer_group="G").consumer_group == "G"


@pytest.mark.parametrize("size", [0, 5001, -3])
def test_batch_size_bounds(size: int) -> None:
    text = exact("Batch size can not be greater than 5000 or less than 1")
    with pytest.raises(LocalProtocolError, match=text):
        consumer_options("s", "c", batch_size=size)
    with pytest.raises(LocalProtocolError, match=text):
        fetch_options(size)
    with pytest.raises(LocalProtocolError, match=text):
        fetch_consumer_options("s", "c", batch_size=size)


@pytest.mark.parametrize("size", [1, 5000])
def test_batch_size_edges_ok(size: int) -> None:
    assert consumer_options("s", "c", batch_size=size).batch_size == size
    assert fetch_options(size).batch_size == size


def test_batch_max_wait_raised_to_minimum() -> None:
    assert consumer_options("s", "c", batch_max_wait_time=0).batch_max_wait_time == 0.001
    assert consumer_options("s", "c", batch_max_wait_time=0.5).batch_max_wait_time == 0.5
    assert fetch_consumer_options("s", "c", batch_max_wait_time=0.01).batch_max_wait_time == 0.1
    with pytest.raises(LocalProtocolError):
        consumer_options("s", "c", batch_max_wait_time=-1)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"start_consume_from_seq": 0}, "startConsumeFromSequence has to be a positive number"),
        ({"start_consume_from_seq": -4}, "startConsumeFromSequence has to be a positive number"),
        ({"last_messages": -2}, "min value for LastMessages is -1"),
        (
            {"start_consume_from_seq": 5, "last_messages": 0},
            "Consumer creation options can't contain both startConsumeFromSequence and "
            "lastMessages",
        ),
        (
            {"consumer_group": "bad group"},
            "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer",
        ),
        ({"max_msg_deliveries": 0}, "max_msg_deliveries must be between 1 and 10, not 0"),
        ({"max_msg_deliveries": 11}, "max_msg_deliveries must be between 1 and 10, not 11"),
    ],
)
def test_consumer_bad_values(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(LocalProtocolError, match=exact(text)):
        consumer_options("s", "c", **kwargs)  # type: ignore[arg-type]


def test_start_and_last_alone_are_fine() -> None:
    assert consumer_options("s", "c", start_consume_from_seq=9).start_consume_from_seq == 9
    assert consumer_options("s", "c", last_messages=0).last_messages == 0
    assert consumer_options("s", "c", start_consume_from_seq=1, last_messages=5).last_messages == 5


def test_fetch_consumer_defaults() -> None:
    opts = fetch_consumer_options("s", "c")
    assert (opts.batch_size, opts.batch_max_wait_time) == (10, 0.1)
    assert (opts.max_ack_time, opts.max_msg_deliveries, opts.consumer_group) == (10.0, 2, "c")


def test_fetch_options() -> None:
    opts = fetch_options()
    assert (opts.batch_size, opts.prefetch, opts.partition_key, opts.partition_number) == (
        10,
        False,
        None,
        None,
    )
    with pytest.raises(
        LocalProtocolError, match=exact("can not use both partition number and partition key")
    ):
        fetch_options(partition_key="k", partition_number=2)


# ------------------------------------------------------------------ declarations (one per call)


# Each declaration with a defaults table, and that table.
DECLARED_DEFAULTS: list[tuple[type, object]] = [
    (_options.ConnectKeywords, _options.CONNECT_DEFAULTS),
    (_options.StationKeywords, _options.STATION_DEFAULTS),
    (_options.ConsumerKeywords, _options._CONSUMER_DEFAULTS),
]


@pytest.mark.parametrize(
    ("declaration", "defaults"),
    [*DECLARED_DEFAULTS, (_options.ConsumerKeywords, _options._FETCH_MESSAGES_DEFAULTS)],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_every_declared_option_has_a_default(declaration: type, defaults: object) -> None:
    # The options are declared once, in a TypedDict; a new one without a default would be a
    # KeyError at the first call that leaves it out.
    assert isinstance(defaults, dict)
    assert set(defaults) == set(declaration.__annotations__)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda **kw: connect_options("h", "u", connection_token="t", **kw), "connect"),
        (lambda **kw: station_options("s", **kw), "create_station"),
        (lambda **kw: consumer_options("s", "c", **kw), "create_consumer"),
        (lambda **kw: fetch_consumer_options("s", "c", **kw), "fetch_messages"),
        (lambda **kw: fetch_messages_options("s", "c", **kw), "fetch_messages"),
        (produce_options, "produce"),
        (lambda **kw: produce_options(msg_id="1", **kw), "produce"),
        (lambda **kw: fetch_options(5, **kw), "fetch"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_an_undeclared_option_is_a_type_error(call: Callable[..., object], name: str) -> None:
    # ``**options`` would take any keyword at run time; Python's own text for a function with
    # explicit keyword parameters is kept (the text callers saw before the options moved).
    with pytest.raises(
        TypeError, match=exact(f"{name}() got an unexpected keyword argument 'bogus'")
    ):
        call(bogus=1)


def test_fetch_messages_splits_consumer_and_fetch_options() -> None:
    consumer, fetch = fetch_messages_options(
        "s", "c", batch_size=7, max_ack_time=3.0, prefetch=True, partition_number=2, timeout=0.5
    )
    assert consumer == fetch_consumer_options("s", "c", batch_size=7, max_ack_time=3.0)
    assert fetch == fetch_options(7, prefetch=True, partition_number=2, timeout=0.5)
    with pytest.raises(TypeError, match="'eager'"):  # internal to the consume loop
        fetch_messages_options("s", "c", eager=True)  # type: ignore[call-arg]
    # The Go SDK's FetchMessages defaults (docs/protocol.md §7.13), short waits raised to 100 ms.
    default, _ = fetch_messages_options("s", "c", batch_max_wait_time=0.01)
    assert (default.batch_max_wait_time, default.max_ack_time, default.max_msg_deliveries) == (
        0.1,
        10.0,
        2,
    )


def _field_docs(declaration: type) -> dict[str, str]:
    """The ``#:`` comment above each field of ``declaration``'s body, joined into one line."""
    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in inspect.getsource(declaration).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            comment.append(text[2:].strip())
        elif (field := re.fullmatch(r"(\w+): .+", text)) and comment:
            docs[field[1]] = " ".join(comment)
            comment = []
    return docs


def _as_documented(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"``{type(value).__name__}.{value.name}``"
    if value == "":
        return '``""``'
    return repr(value)


@pytest.mark.parametrize(
    ("declaration", "defaults"), DECLARED_DEFAULTS, ids=lambda x: getattr(x, "__name__", "")
)
def test_each_option_documents_the_default_it_gets(declaration: type, defaults: object) -> None:
    # The default is written twice: in the table the call applies and in the field's ``#:``
    # comment, which is all the reference shows; they must say the same.
    assert isinstance(defaults, dict)
    docs = _field_docs(declaration)
    assert set(docs) == set(declaration.__annotations__)
    wrong = {
        name: doc
        for name, doc in docs.items()
        if f"default {_as_documented(defaults[name])}" not in doc
    }
    assert not wrong, wrong


def test_fetch_messages_documents_its_own_defaults() -> None:
    # Those that differ from create_consumer's are said in its declaration's docstring.
    fetch_doc = " ".join((_options.FetchMessagesKeywords.__doc__ or "").split())
    for name, value in _options._FETCH_MESSAGES_DEFAULTS.items():
        if value != _options._CONSUMER_DEFAULTS[name]:
            assert f"``{name}`` {value!r}" in fetch_doc, name


@pytest.mark.parametrize(
    ("declaration", "checked"),
    [
        (_options.ConnectKeywords, _options.ConnectOptions),
        (_options.StationKeywords, _options.StationOptions),
        (_options.ConsumerKeywords, _options.ConsumerOptions),
        (_options.ProduceKeywords, _options.ProduceOptions),
        (_options.FetchKeywords, _options.FetchOptions),
    ],
    ids=lambda x: x.__name__,
)
def test_every_declared_option_reaches_the_checked_values(declaration: type, checked: type) -> None:
    # What a caller may pass (the TypedDict) and what the core reads (the frozen dataclass) are
    # two lists of names that mypy cannot derive from one another: this keeps them in step, so
    # an option cannot be accepted and then dropped on the way to the core.
    assert set(declaration.__annotations__) <= {f.name for f in dataclasses.fields(checked)}
