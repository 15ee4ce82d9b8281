"""The fsync mode in force is visible (docs/broker.md, "Durability"): ``$memphis_broker_info``
answers it from the server's own ``/varz``, whatever the broker was started with."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import nats
import pytest

from memphis_broker import EmbeddedBroker
from memphis_broker._durability import broker_info, describe_fsync, sync_setting_from_varz


@pytest.mark.parametrize(
    ("sync", "expected"),
    [
        (None, "fsync every 2m (nats-server default)"),
        ("always", "fsync always"),
        ("1s", "fsync every 1s"),
        ("100ms", "fsync every 100ms"),
    ],
)
def test_broker_info_names_the_fsync_mode(sync: str | None, expected: str) -> None:
    with EmbeddedBroker(sync_interval=sync) as broker:

        async def ask() -> dict[str, object]:
            nc = await nats.connect(**broker.connect_options())
            try:
                msg = await nc.request("$memphis_broker_info", b"", timeout=10)
            finally:
                await nc.close()
            doc: dict[str, object] = json.loads(msg.data)
            return doc

        doc = asyncio.run(ask())
    assert doc["fsync"] == expected
    assert doc["sync_always"] is (sync == "always")


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"sync_interval": 120_000_000_000}, None),
        ({"sync_interval": 120_000_000_000, "sync_always": True}, "always"),
        ({"sync_interval": 300_000_000_000}, "5m"),
        ({"sync_interval": 1_500_000_000}, "1500ms"),
    ],
)
def test_varz_settings_read_back_as_the_launcher_names_them(
    config: dict[str, object], setting: str | None
) -> None:
    assert sync_setting_from_varz(config) == setting
    assert describe_fsync(setting).startswith("fsync ")


class _Varz(http.server.BaseHTTPRequestHandler):
    """``/varz`` of a server whose JetStream comes up after its monitoring endpoint: the first
    answers have no ``jetstream`` section yet."""

    answers: ClassVar[list[dict[str, object]]] = []

    def do_GET(self) -> None:
        body = json.dumps(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def starting_server() -> Iterator[str]:
    jetstream: dict[str, object] = {"jetstream": {"config": {"sync_always": True}}}
    _Varz.answers = [{"server_id": "x"}, {"server_id": "x"}, jetstream]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Varz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_broker_info_waits_for_jetstream_to_show_in_varz(starting_server: str) -> None:
    # Right after a start /varz may have no JetStream config yet: that is not "unknown".
    doc = asyncio.run(broker_info([starting_server], budget=5.0))
    assert doc["fsync"] == "fsync always"


def test_broker_info_without_an_endpoint_is_unknown() -> None:
    assert asyncio.run(broker_info([], budget=5.0)) == {"fsync": "unknown"}
