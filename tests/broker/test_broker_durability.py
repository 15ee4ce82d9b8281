"""The fsync mode in force is visible (docs/broker.md, "Durability"): ``$memphis_broker_info``
answers it from the server's own ``/varz``, whatever the broker was started with."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from memphis_broker import EmbeddedBroker
from memphis_broker._durability import describe_fsync, sync_setting_from_varz


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
