"""The launcher and the console: on by default, never a reason for the broker not to start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from memphis_broker.console._state import payload_view
from memphis_core.memphis._schemas import Schema, parse_schema_init
from tests.support.launcher import launcher

# The broker as `memphis-broker` runs it, with the console's web stack made unimportable.
_WITHOUT_STARLETTE = (
    "import sys; sys.modules['starlette'] = None; "
    "from memphis_broker.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


def _args(store: Path, console_port: str) -> list[str]:
    return [
        "--port",
        "0",
        "--monitor-port",
        "0",
        "--store-dir",
        str(store),
        "--console-port",
        console_port,
    ]


def test_broker_starts_without_the_console_extra_and_says_why(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_STARLETTE, *_args(tmp_path, "0")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("memphis-broker ready: "), line
        assert (
            ", console off (starlette is not installed: pip install 'memphis-sansio[console]'), "
            "token auth" in line
        ), line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_console_port_in_use_leaves_the_broker_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with launcher(*_args(tmp_path, str(port))) as proc:
            line = proc.ready(timeout=60)
            assert f", console off (cannot listen on 127.0.0.1:{port}: " in line, line
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0


def test_console_port_off(tmp_path: Path) -> None:
    with launcher(*_args(tmp_path, "off")) as proc:
        assert ", console off (--console-port off), token auth" in proc.ready(timeout=60)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0


@pytest.mark.parametrize(
    ("data", "kind", "text"),
    [
        (b'{"a": 1}', "json", '{\n  "a": 1\n}'),
        (b"<b>hi</b>\n", "text", "<b>hi</b>\n"),
        (b"\x00\x01", "hex", "00 01"),
        (b"\xff", "hex", "ff"),
        (b"{not json", "text", "{not json"),
    ],
)
def test_payload_view(data: bytes, kind: str, text: str) -> None:
    view = payload_view(data)
    assert (view.kind, view.text) == (kind, text)


def _json_schema() -> Schema:
    init = parse_schema_init(
        {
            "schema_name": "order",
            "type": "json",
            "active_version": {
                "version_number": 1,
                "descriptor": "",
                "schema_content": '{"type": "object", "required": ["id"]}',
                "message_struct_name": "",
            },
        }
    )
    assert init is not None
    return Schema(init)


def test_payload_view_deserialises_with_the_station_schema() -> None:
    view = payload_view(b'{"id": 7}', _json_schema())
    assert (view.kind, view.text) == ("json schema", '{\n  "id": 7\n}')
    view = payload_view(b'{"no": "id"}', _json_schema())
    assert (view.kind, view.text) == ("json, not valid for the schema", '{\n  "no": "id"\n}')
    view = payload_view(b"\x01", _json_schema())
    assert (view.kind, view.text) == ("hex, not valid for the schema", "01")
