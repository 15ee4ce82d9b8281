"""With ``-v`` every control request is logged on ``memphis_broker.control`` at DEBUG:
subject, station and name, the outcome (``ok`` or the error text) and the time in ms."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from memphis_broker import ControlPlane, EmbeddedBroker
from tests.support.control_client import connect


def test_every_request_is_logged_with_its_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="memphis_broker.control")

    async def main(broker: EmbeddedBroker) -> str:
        opts = broker.control_plane_options()
        opts.pop("monitor_url")
        async with ControlPlane([broker.url], name="logged", **opts):
            c = await connect(broker)
            try:
                assert await c.create_station("logged-st") == ""
                assert (await c.create_producer("logged-st", "prod"))["error"] == ""
                bad = await c.create_station("Bad Name!")
                assert bad
                assert '"error":""' in await c.create_consumer("logged-st", "cons")
                assert await c.destroy("producer", "logged-st", "nobody") != ""
            finally:
                await c.nc.close()
        return bad

    with EmbeddedBroker(store_dir=tmp_path, control_plane=False) as broker:
        bad = asyncio.run(main(broker))

    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "memphis_broker.control" and r.levelno == logging.DEBUG
    ]
    ms = r" \(\d+\.\d ms\)$"

    def one(pattern: str) -> None:
        hits = [line for line in lines if re.fullmatch(pattern, line)]
        assert len(hits) == 1, (pattern, lines)

    one(r"\[logged\] \$memphis_station_creations station='logged-st' -> ok" + ms)
    one(r"\[logged\] \$memphis_producer_creations station='logged-st' name='prod' -> ok" + ms)
    one(r"\[logged\] \$memphis_consumer_creations station='logged-st' name='cons' -> ok" + ms)
    one(r"\[logged\] \$memphis_station_creations station='Bad Name!' -> " + re.escape(bad) + ms)
    one(
        r"\[logged\] \$memphis_producer_destructions station='logged-st' name='nobody' -> "
        r"Producer nobody at station logged-st does not exist" + ms
    )
