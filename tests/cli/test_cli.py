"""The ``memphis`` command against a real broker, run in-process through ``main(argv)``.

Effects are checked through the CLI's other subcommands and, where the CLI cannot see them
(acks), with nats-py on the broker itself; error paths must be one line on stderr and a
non-zero exit code.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

import memphis_sync
from memphis_broker import EmbeddedBroker
from memphis_cli import main
from tests.support.cli import Cli, Result
from tests.support.names import TOKEN
from tests.support.waits import wait_until

Name = Callable[[str], str]


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert the failure shape every error shares: nothing on stdout, one stderr line."""
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("memphis"), lines
    assert "Traceback" not in result.err
    return lines[0]


def ack_floor(broker: EmbeddedBroker, station: str, group: str) -> int:
    """The group's durable ack floor on partition 1, read from JetStream directly."""

    async def get() -> int:
        nc = await nats.connect(broker.url, token=TOKEN)
        try:
            info = await nc.jetstream().consumer_info(f"{station}$1", group)
            return int(info.ack_floor.stream_seq)
        finally:
            await nc.close()

    return asyncio.run(get())


def sync_connect(broker: EmbeddedBroker) -> memphis_sync.Connection:
    return memphis_sync.connect(broker.host, "root", connection_token=TOKEN, port=broker.port)


# ---------------------------------------------------------------------------------- flags


def test_help_shows_defaults_and_env_names(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for expected in (
        "MEMPHIS_HOST; default: localhost",
        "MEMPHIS_USERNAME; default: root",
        "MEMPHIS_PORT; default: 6666",
        "MEMPHIS_ACCOUNT_ID; default: 1",
        "MEMPHIS_TIMEOUT; default: 15.0",
        "MEMPHIS_CONNECTION_TOKEN",
        "MEMPHIS_PASSWORD",
        "MEMPHIS_TLS_CA",
    ):
        assert expected in text
    sub = cli("station", "create", "--help")
    assert sub.code == 0
    assert "MEMPHIS_PORT; default: 6666" in " ".join(sub.out.split())
    assert "--partitions" in sub.out


def test_flags_win_over_the_environment(
    cli: Cli, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    station = name("flags")
    # The environment points at a closed port; the flag (after the subcommand) fixes it.
    monkeypatch.setenv("MEMPHIS_PORT", "1")
    monkeypatch.setenv("MEMPHIS_MAX_RECONNECT", "0")
    assert cli("station", "create", station, "--port", str(broker.port)).code == 0
    # ... and before the subcommand.
    assert cli("--port", str(broker.port), "station", "info", station, "--json").code == 0
    # Without the flag, the environment's closed port is used.
    assert "memphis:" in one_line_error(cli("station", "create", station, "--timeout", "2"))
    # A flag that is wrong beats a correct environment too.
    monkeypatch.setenv("MEMPHIS_PORT", str(broker.port))
    monkeypatch.setenv("MEMPHIS_CONNECTION_TOKEN", "not-the-token")
    one_line_error(cli("produce", station, "x"))
    assert cli("produce", station, "x", "--connection-token", TOKEN).code == 0


def test_a_bad_environment_value_names_the_variable(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMPHIS_PORT", "sixty")
    line = one_line_error(cli("station", "list"), code=2)
    assert "MEMPHIS_PORT='sixty'" in line


def test_bad_usage_is_one_line_with_exit_2(cli: Cli) -> None:
    line = one_line_error(cli("schema", "create", "s", "--type", "yaml", "f.json"), code=2)
    assert "invalid choice: 'yaml'" in line
    one_line_error(cli("consume", "st"), code=2)  # --consumer is required


# ---------------------------------------------------------------------------------- stations


def test_station_create_info_list_destroy(cli: Cli, name: Name) -> None:
    station = name("orders")
    created = cli(
        "station",
        "create",
        station,
        "--partitions",
        "3",
        "--retention-type",
        "messages",
        "--retention-value",
        "500",
        "--storage-type",
        "memory",
        "--replicas",
        "1",
        "--idempotency-window",
        "30",
    )
    assert created.code == 0, created.err
    assert created.out.strip() == f"station {station} created"
    again = cli("station", "create", station, "--partitions", "3")
    assert again.code == 0, again.err
    assert again.out.strip() == f"station {station} already exists: left unchanged"
    (info,) = cli("station", "info", station, "--json").json_lines()
    assert info["name"] == station
    assert info["partitions"] == 3
    assert [p["stream"] for p in info["partitions_detail"]] == [f"{station}${p}" for p in (1, 2, 3)]
    assert (info["retention_type"], info["retention_value"]) == ("messages", 500)
    assert info["storage_type"] == "memory"
    assert info["idempotency_window"] == 30.0
    assert info["consumer_groups"] == []
    assert info["fsync"] == "fsync every 2m (nats-server default)"  # docs/broker.md, Durability
    assert "durability: fsync every 2m" in cli("station", "info", station).out

    listed = {s["name"]: s for s in cli("station", "list", "--json").json_lines()}
    assert listed[station]["partitions"] == 3
    assert not any(n.startswith(("$", "KV_")) for n in listed)  # internal streams left out
    table = cli("station", "list")
    assert table.code == 0
    assert station in table.out

    assert cli("station", "destroy", station).code == 0
    assert "does not exist" in one_line_error(cli("station", "info", station))
    assert "does not exist" in one_line_error(cli("station", "destroy", station))
    assert station not in {s["name"] for s in cli("station", "list", "--json").json_lines()}


def test_station_info_shows_the_schema_and_dls_settings(
    cli: Cli, name: Name, tmp_path: Path
) -> None:
    schema, station, dls = name("order"), name("orders"), name("dead")
    path = tmp_path / "order.json"
    path.write_text(json.dumps({"type": "object"}))
    assert cli("schema", "create", schema, "--type", "json", str(path)).code == 0
    created = cli("station", "create", station, "--schema", schema, "--dls-station", dls)
    assert created.code == 0, created.err
    (info,) = cli("station", "info", station, "--json").json_lines()
    assert info["schema"] == schema
    assert info["dls"] == {"poison": True, "schemaverse": True, "dls_station": dls}
    text = cli("station", "info", station).out
    assert f"  schema: {schema}\n" in text
    assert f"  dead letters: poison on, schema failures on, copied to {dls}\n" in text
    (plain,) = [s for s in cli("station", "list", "--json").json_lines() if s["name"] == dls]
    assert (plain["schema"], plain["dls"]["dls_station"]) == ("", "")


def test_tables_are_plain_lines_when_stdout_is_not_a_terminal(cli: Cli, name: Name) -> None:
    # A name longer than rich's 80-column fallback: folded, it would break `grep` and `awk`.
    station = name("a-rather-long-station-name-that-no-80-column-table-could-hold-on-one-line")
    assert cli("station", "create", station, "--partitions", "2").code == 0
    listed = cli("station", "list").out.splitlines()
    assert listed[0].split() == [
        "station", "partitions", "messages", "bytes", "retention", "storage", "schema"
    ]  # fmt: skip
    (row,) = [line for line in listed if line.startswith(station)]
    assert row.split() == [station, "2", "0", "0", "message_age_sec", "3600", "file", "x1", "-"]
    assert not any(c in "".join(listed) for c in "│┃━─")  # no box drawing
    partitions = cli("station", "info", station).out.splitlines()
    assert [line.split()[0] for line in partitions[-2:]] == [f"{station}$1", f"{station}$2"]


def test_tables_are_drawn_on_a_terminal(
    cli: Cli, name: Name, monkeypatch: pytest.MonkeyPatch
) -> None:
    station = name("tty")
    assert cli("station", "create", station).code == 0
    monkeypatch.setattr("memphis_cli._output.stdout_is_terminal", lambda: True)
    table = cli("station", "list").out
    assert "station(s)" in table  # the title
    assert "│" in table or "┃" in table


def test_plain_tables_keep_one_row_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    from memphis_cli._output import print_table

    print_table("t", ("id", "data"), [("1", "two\nlines\tand a tab"), ("2", "x")])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["id", "1", "2"]
    assert lines[1].split(maxsplit=1)[1] == "two\\nlines\\tand a tab"


def test_station_create_rejects_bad_options_in_one_line(cli: Cli, name: Name) -> None:
    line = one_line_error(cli("station", "create", name("bad"), "--retention-value", "-5"))
    assert line == "memphis: retention value can not be negative"
    line = one_line_error(cli("station", "create", name("bad"), "--partitions", "20000"))
    assert "20000 partitions" in line


# ---------------------------------------------------------------------------------- produce


def test_produce_one_message_prints_its_sequence(cli: Cli, name: Name) -> None:
    station = name("one")
    result = cli("produce", station, "hello", "--headers", "a=1", "b=x=y")
    assert result.code == 0, result.err
    assert result.out.strip().endswith(f"{station}$1 seq 1")
    (msg,) = cli("consume", station, "--consumer", "c", "--count", "1", "--json").json_lines()
    assert msg == {
        "sequence": 1,
        "partition": 1,
        "headers": {"a": "1", "b": "x=y"},
        "data": "hello",
    }


def test_produce_stdin_lines_async_with_count_and_summary(cli: Cli, name: Name) -> None:
    station = name("stdin")
    result = cli("produce", station, "--count", "2", "--headers", "k=v", stdin="a\nbb\r\nccc\n")
    assert result.code == 0, result.err
    assert "produced 6 message(s), 12 bytes" in result.out
    msgs = cli("consume", station, "--consumer", "c", "--count", "6", "--json").json_lines()
    assert [m["data"] for m in msgs] == ["a", "a", "bb", "bb", "ccc", "ccc"]
    assert [m["sequence"] for m in msgs] == [1, 2, 3, 4, 5, 6]
    assert all(m["headers"] == {"k": "v"} for m in msgs)


def test_produce_msg_id_is_idempotent(cli: Cli, name: Name) -> None:
    station = name("dedup")
    assert cli("produce", station, "once", "--msg-id", "m-1", "--count", "3").code == 0
    again = cli("produce", station, "once", "--msg-id", "m-1")
    assert "duplicate" in again.out
    (info,) = cli("station", "info", station, "--json").json_lines()
    assert info["messages"] == 1


def test_produce_partition_key_picks_one_partition(cli: Cli, name: Name) -> None:
    station = name("keys")
    assert cli("station", "create", station, "--partitions", "3").code == 0
    assert cli("produce", station, "a", "b", "c", "d", "--partition-key", "user-7").code == 0
    (info,) = cli("station", "info", station, "--json").json_lines()
    counts = sorted(p["messages"] for p in info["partitions_detail"])
    assert counts == [0, 0, 4]


def test_bad_headers_fail_before_anything_is_sent(cli: Cli, name: Name) -> None:
    station = name("hdr")
    line = one_line_error(cli("produce", station, "--headers", "novalue", "x"), code=2)
    assert "'novalue'" in line
    assert "KEY=VALUE" in line
    # Not even the station was auto-created: nothing reached the broker.
    one_line_error(cli("station", "info", station))


def test_wrong_token_is_one_line(cli: Cli, name: Name) -> None:
    line = one_line_error(cli("produce", name("x"), "m", "--connection-token", "wrong"))
    assert "authorization" in line.lower()
    line = one_line_error(cli("station", "list", "--connection-token", "wrong"))
    assert "authorization" in line.lower()


@pytest.mark.parametrize(
    "argv",
    [("station", "list"), ("station", "info", "st"), ("schema", "list"), ("dls", "list", "st")],
    ids=" ".join,
)
def test_no_server_is_connection_refused_at_once(cli: Cli, argv: tuple[str, ...]) -> None:
    from tests.support.nats_server import free_port

    started = time.monotonic()
    line = one_line_error(cli(*argv, "--port", str(free_port())))
    # What produce has always said, and as quickly: before, the JetStream commands went through
    # nats-py, which retried the closed port for 16.5 s.
    assert "connection refused" in line.lower()
    assert time.monotonic() - started < 5.0


def test_debug_shows_the_traceback(cli: Cli, name: Name) -> None:
    result = cli("produce", name("x"), "m", "--connection-token", "wrong", "--debug")
    assert result.code == 1
    assert "Traceback" in result.err
    assert result.err.splitlines()[-1].startswith("memphis: ")


def test_ctrl_c_exits_130(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("memphis_sync.Connection.stations", interrupted)
    result = cli("station", "list")
    assert result.code == 130
    assert result.err.strip() == "memphis: interrupted"


# ---------------------------------------------------------------------------------- consume


def test_consume_acks_by_default_and_not_with_no_ack(
    cli: Cli, broker: EmbeddedBroker, name: Name
) -> None:
    station = name("acks")
    assert cli("produce", station, "m1", "m2", "m3").code == 0
    out = cli("consume", station, "--consumer", "lazy", "--no-ack", "--count", "2")
    assert out.out.splitlines() == ["#1 m1", "#2 m2"]
    assert ack_floor(broker, station, "lazy") == 0
    assert cli("consume", station, "--consumer", "eager", "--count", "3").code == 0
    # Acks are written by the client after the print: closing the connection drains them.
    wait_until(lambda: ack_floor(broker, station, "eager") == 3, what="the acks")


def test_acks_of_the_last_batch_survive_the_exit(
    cli: Cli, broker: EmbeddedBroker, name: Name
) -> None:
    # Regression: memphis_sync's close() could lose the acks queued just before it (about
    # every second run), so a consumed message came back to its group later. Several groups
    # make a lost ack all but certain to show.
    station = name("drain")
    assert cli("produce", station, "a", "b").code == 0
    for group in (f"g{i}" for i in range(6)):
        assert cli("consume", station, "--consumer", group, "--count", "2").code == 0

        def acked(group: str = group) -> bool:
            return ack_floor(broker, station, group) == 2

        wait_until(acked, timeout=3, what=f"{group}'s acks")


class _ClosingPipe(io.StringIO):
    """A stdout whose reader goes away after ``lines`` lines (``memphis consume | head``)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left == 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= text.count("\n")
        return super().write(text)


def test_a_closed_pipe_exits_quietly_and_returns_unseen_messages(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    station = name("pipe")
    assert cli("produce", station, "m1", "m2", "m3", "m4", "m5").code == 0
    pipe, original = _ClosingPipe(lines=2), sys.stdout
    monkeypatch.setattr(sys, "stdout", pipe)
    result = cli("consume", station, "--consumer", "head", "--count", "5")
    monkeypatch.setattr(sys, "stdout", original)
    assert (result.code, result.err) == (141, "")
    assert pipe.getvalue().splitlines() == ["#1 m1", "#2 m2"]
    # The three never printed come back at once, not after the group's 30 s max_ack_time.
    rest = cli("consume", station, "--consumer", "head", "--count", "3", "--timeout", "2")
    assert rest.out.splitlines() == ["#3 m3", "#4 m4", "#5 m5"]


def test_consume_group_shares_the_position_and_timeout_ends_an_idle_wait(
    cli: Cli, name: Name
) -> None:
    station = name("group")
    assert cli("produce", station, "a", "b", "c").code == 0
    first = cli("consume", station, "--consumer", "x", "--group", "g", "--count", "2", "--json")
    rest = cli("consume", station, "--consumer", "y", "--group", "g", "--timeout", "0.3", "--json")
    assert [m["data"] for m in first.json_lines()] == ["a", "b"]
    assert [m["data"] for m in rest.json_lines()] == ["c"]
    assert "consumed 1 message(s)" in rest.err
    (info,) = cli("station", "info", station, "--json").json_lines()
    assert info["consumer_groups"] == ["g"]


def test_consume_prints_binary_data_as_base64_in_json(cli: Cli, name: Name) -> None:
    station = name("bin")
    assert cli("produce", station, "--count", "2", stdin=b"\xff\xfe\n").code == 0
    msgs = cli("consume", station, "--consumer", "c", "--count", "2", "--json").json_lines()
    assert [m.get("data_base64") for m in msgs] == ["//4=", "//4="]
    text = cli("consume", station, "--consumer", "d", "--count", "1")
    assert text.out.strip() == "#1 \\xff\\xfe"


def test_consume_unknown_station_fails_without_creating_it(cli: Cli, name: Name) -> None:
    station = name("missing")
    line = one_line_error(cli("consume", station, "--consumer", "c", "--timeout", "0.2"))
    assert line == f"memphis: station {station} does not exist"
    one_line_error(cli("station", "info", station))


# ---------------------------------------------------------------------------------- schemas


def test_schema_create_attach_detach(cli: Cli, name: Name, tmp_path: Path) -> None:
    schema, station = name("order"), name("validated")
    path = tmp_path / "order.json"
    path.write_text(
        json.dumps(
            {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
        )
    )
    assert cli("schema", "create", schema, "--type", "json", str(path)).code == 0
    assert cli("station", "create", station).code == 0
    assert cli("schema", "attach", schema, "--station", station).code == 0
    assert cli("produce", station, '{"id": 1}').code == 0
    line = one_line_error(cli("produce", station, '{"id": "one"}'))
    assert "schema" in line.lower()
    assert cli("schema", "detach", "--station", station).code == 0
    assert cli("produce", station, '{"id": "one"}').code == 0
    assert "No such file" in one_line_error(
        cli("schema", "create", name("s"), "--type", "json", str(tmp_path / "absent.json"))
    )


def test_schema_list(cli: Cli, name: Name, tmp_path: Path) -> None:
    schema = name("listed")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "object"}))
    assert cli("schema", "create", schema, "--type", "json", str(path)).code == 0
    docs = {d["name"]: d for d in cli("schema", "list", "--json").json_lines()}
    assert docs[schema] == {
        "name": schema,
        "type": "json",
        "versions": 1,
        "active_version": 1,
        "created_by": "root",
    }
    (row,) = [line for line in cli("schema", "list").out.splitlines() if schema in line]
    assert row.split() == [schema, "json", "1", "1", "root"]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "recrd", "name": "order"}, "unknown type 'recrd' in 'order'"),
        ({"type": "record", "fields": []}, '"name" is a required field missing from the schema'),
        (
            {"type": "record", "name": "o", "fields": [{"name": "id", "type": "strin"}]},
            "unknown type 'strin'",
        ),
    ],
)
def test_an_invalid_avro_schema_says_what_is_wrong(
    cli: Cli, name: Name, tmp_path: Path, schema: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(json.dumps(schema))
    line = one_line_error(cli("schema", "create", name("avro"), "--type", "avro", str(path)))
    # The broker words it (memphis_broker and the client share avro_schema_problem).
    assert line == f"memphis: your Avro file is invalid: {problem}"


# ---------------------------------------------------------------------------------- DLS


def test_dls_list_and_resend_a_poison_message(cli: Cli, broker: EmbeddedBroker, name: Name) -> None:
    station = name("poison")
    assert cli("produce", station, "bad-apple").code == 0
    with sync_connect(broker) as conn:
        consumer = conn.create_consumer(
            station, "worker", max_msg_deliveries=1, max_ack_time=0.3, batch_max_wait_time=0.2
        )
        wait_until(consumer.fetch, what="the first delivery")  # never acked: poison

        def listed() -> list[Any]:
            assert consumer.fetch() == []  # pulling makes JetStream notice the exhaustion
            return cli("dls", "list", station, "--json").json_lines()

        (row,) = wait_until(listed, timeout=15, what="a DLS row")
        assert row["poisoned_cgs"] == ["worker"]
        assert bytes.fromhex(row["message_details"]["data"]) == b"bad-apple"
        table = cli("dls", "list", station)
        assert "bad-apple" in table.out
        resent = cli("dls", "resend", station, "--id", str(row["id"]))
        assert resent.out.startswith("resent 1 message(s)")
        (msg,) = wait_until(consumer.fetch, what="the resent message")
        assert msg.data == b"bad-apple"


def test_dls_resend_without_a_live_consumer_says_nothing_was_delivered(
    cli: Cli, broker: EmbeddedBroker, name: Name
) -> None:
    station = name("orphan")
    assert cli("produce", station, "bad-apple").code == 0
    with sync_connect(broker) as conn:
        consumer = conn.create_consumer(
            station, "gone", max_msg_deliveries=1, max_ack_time=0.3, batch_max_wait_time=0.2
        )
        wait_until(consumer.fetch, what="the first delivery")

        def listed() -> list[Any]:
            assert consumer.fetch() == []
            return cli("dls", "list", station, "--json").json_lines()

        wait_until(listed, timeout=15, what="a DLS row")
    # The connection is closed: the group "gone" has no member left to receive a resend.

    def resent() -> Result:
        result = cli("dls", "resend", station)
        return result if result.code == 1 else None  # type: ignore[return-value]

    result = wait_until(resent, what="the control plane to see the consumer gone")
    assert "resent" not in result.out
    assert "not delivered: 1 message(s) of group(s) gone, which have no live consumer" in result.err
    assert len(cli("dls", "list", station, "--json").json_lines()) == 1  # the row stays


def test_dls_without_memphis_broker_is_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    monkeypatch.setitem(sys.modules, "memphis_broker", None)  # import fails as if absent
    line = one_line_error(cli("dls", "list", name("st")))
    assert "needs memphis_broker" in line


@pytest.fixture
def refused_store(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A nats-server whose user ``app`` may use JetStream but not the control plane's buckets,
    as a password-mode memphis-broker's application users (docs/introspection.md), with one
    station ``st`` (created as root). Yields (port, station)."""
    from memphis_broker._store import BUCKETS
    from tests.support.nats_server import find_nats_server, free_port, wait_for_port

    port = free_port()
    deny = ["$KV.>", *(f"$JS.API.STREAM.*.KV_memphis_{bucket}" for bucket in BUCKETS)]
    conf = tmp_path / "nats.conf"
    app = {"user": "app$1", "password": "pw", "permissions": {"publish": {"deny": deny}}}
    root = {"user": "root", "password": "memphis"}
    conf.write_text(  # nats-server's config accepts JSON values
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {json.dumps(str(tmp_path / 'js'))} }}\n"
        f"accounts {{ A {{ jetstream: enabled, users: {json.dumps([root, app])} }} }}\n"
    )
    process = subprocess.Popen(
        [find_nats_server(), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)

        async def create() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", user="root", password="memphis")
            await nc.jetstream().add_stream(name="st$1", subjects=["st$1.>"])
            await nc.close()

        asyncio.run(create())
        yield port, "st"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_dls_refused_the_store_is_one_line_that_says_why(
    refused_store: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, station = refused_store
    for var in list(os.environ):
        if var.startswith("MEMPHIS_"):
            monkeypatch.delenv(var)
    flags = ["--port", str(port), "--username", "app", "--password", "pw", "--timeout", "2"]
    assert main([*flags, "station", "info", station]) == 0  # introspection works for this user
    capsys.readouterr()
    code = main([*flags, "dls", "list", station])
    line = one_line_error(Result(code, *capsys.readouterr()))
    assert "cannot open the control-plane state" in line
    assert "run memphis dls as root" in line


# ---------------------------------------------------------------------------------- bench


def test_bench_produce_sync_measures_latency(cli: Cli, name: Name) -> None:
    station = name("bench")
    args = ("--station", station, "--count", "300", "--size", "64")
    (result,) = cli("bench", "produce", *args, "--batch", "1", "--json").json_lines()
    assert result["messages"] == 300
    assert result["msgs_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    table = cli("bench", "produce", *args, "--batch", "0")
    assert table.code == 0
    for label in ("msgs/s", "MB/s", "elapsed", "produce (async)"):
        assert label in table.out
    assert "produce" in table.err  # the progress bar is drawn on stderr
    (info,) = cli("station", "info", station, "--json").json_lines()
    assert info["messages"] == 600


def test_bench_consume_reads_count_messages(cli: Cli, name: Name) -> None:
    station = name("benchc")
    result = cli(
        "bench", "consume", "--station", station, "--count", "500", "--batch", "50", "--json"
    )
    assert result.code == 0, result.err
    (doc,) = result.json_lines()
    assert doc["messages"] == 500
    assert doc["mb_per_s"] > 0
    assert doc["p50_ms"] is None
    table = cli("bench", "consume", "--station", station, "--count", "100").out
    assert "consume (fetch 100 + ack)" in table
    assert "produce" not in table  # no produce-latency rows in a consume report
    assert one_line_error(cli("bench", "consume", "--count", "0"), code=2)


# ---------------------------------------------------------------------------------- script


def test_memphis_broker_help_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    from memphis_broker.__main__ import main as broker_main

    with pytest.raises(SystemExit) as exited:
        broker_main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for subcommand in ("'run'", "'dls list'", "'dls resend'", "'station set-dls'"):
        assert subcommand in text
    assert "'memphis-broker dls list --help'" in text


def test_installed_console_script(broker_env: dict[str, str], name: Name) -> None:
    script = Path(sysconfig.get_path("scripts")) / "memphis"
    assert script.exists(), "pip install -e '.[cli]' installs the memphis console script"
    station = name("script")
    env = {**os.environ, **broker_env}
    produced = subprocess.run(
        [str(script), "produce", station],
        input="from\nthe shell\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [str(script), "consume", station, "--consumer", "sh", "--count", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert consumed.stdout.splitlines() == ["#1 from", "#2 the shell"]
    failed = subprocess.run(
        [str(script), "consume", name("nope"), "--consumer", "c"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert len(failed.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------------- auth, TLS


def test_password_mode_on_every_path(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: Name
) -> None:
    # The nats-py paths (list, the existence check, dls) must log in as root$1 like connect().
    with EmbeddedBroker(store_dir=tmp_path / "store", users={}, root_password="S3cret!pw") as b:
        monkeypatch.delenv("MEMPHIS_CONNECTION_TOKEN")
        monkeypatch.setenv("MEMPHIS_PORT", str(b.port))
        monkeypatch.setenv("MEMPHIS_PASSWORD", "S3cret!pw")
        station = name("pw")
        assert cli("produce", station, "p1").code == 0
        assert [s["name"] for s in cli("station", "list", "--json").json_lines()] == [station]
        (msg,) = cli("consume", station, "--consumer", "c", "--count", "1", "--json").json_lines()
        assert msg["data"] == "p1"
        assert cli("dls", "list", station, "--json").out == ""
        line = one_line_error(cli("station", "list", "--password", "wrong"))
        assert line.startswith(f"memphis: cannot connect to {b.host}:{b.port} as root: ")
        assert "authorization" in line.lower()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    base = tmp_path_factory.mktemp("cli-tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    server, client = ca.issue_cert("localhost", "127.0.0.1"), ca.issue_cert("memphis-cli")
    files: dict[str, Any] = {
        "ca": ca.cert_pem,
        "other_ca": other_ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
    }
    for key, blob in files.items():
        blob.write_to_path(str(base / key))
    return {key: str(base / key) for key in files}


def test_tls_flags_reach_both_connections(
    cli: Cli, tmp_path: Path, certificates: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.nats_server import NatsServer

    c = certificates
    server_tls = (c["server_cert"], c["server_key"], c["ca"])
    with NatsServer(tmp_path, token=TOKEN, tls=server_tls) as server:
        args = ["--host", "127.0.0.1", "--port", str(server.port)]
        args += ["--tls-cert", c["client_cert"], "--tls-key", c["client_key"]]
        # JetStream over mutual TLS (this server has no control plane, so no stations).
        listed = cli("station", "list", "--json", *args, "--tls-ca", c["ca"])
        assert (listed.code, listed.out) == (0, ""), listed.err
        # asyncio's harmless SSL-close warning would be a stray stderr line in a terminal.
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
        line = one_line_error(cli("station", "list", *args, "--tls-ca", c["other_ca"]))
        assert "certificate" in line.lower()
        # memphis_sync's TLS: a partial set is refused before dialling, in connect()'s words.
        line = one_line_error(cli("produce", "st", "m", "--tls-ca", c["ca"]))
        assert line == "memphis: must provide a TLS cert file"
