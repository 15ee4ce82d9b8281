"""What the console shows (``console._state``): payload rendering, the fsync mode."""

from __future__ import annotations

import pytest

from memphis_broker.console._state import ServerHealth, payload_view
from memphis_core.memphis._schemas import Schema, parse_schema_init


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


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        # What /varz reports for --sync always (the interval is still there, unused).
        ({"sync_always": True, "sync_interval": 120_000_000_000}, "always"),
        ({"sync_interval": 120_000_000_000}, "2m0s"),
        ({"sync_interval": 100_000_000}, "100ms"),
        ({"sync_interval": 1_500_000_000}, "1.5s"),
    ],
)
def test_fsync_mode_from_varz(config: dict[str, object], shown: str) -> None:
    health = ServerHealth(url="http://x", varz={"jetstream": {"config": config}})
    assert health.sync == shown
