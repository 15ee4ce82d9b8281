"""Concurrent requests that raced in review: creates and destroys landing at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support.control_client import Body, Client

Run = Callable[[Body], None]


def test_partitions_above_the_printed_limit_are_refused(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        text = await c.create_station(name, partitions_number=10_001)
        assert text == (
            f"cannot create station with 10001 partitions (max:10000 min:1): Station -  {name}, "
        )
        assert await c.api.stream_info(f"{name}$1") is None

    run(body)


def test_station_create_racing_an_auto_create_succeeds(run: Run, name: str) -> None:
    # A producer auto-creates the default station while an explicit create with other options
    # runs: whichever loses must see the station as existing, not a JetStream config error.
    async def body(c: Client) -> None:
        station_reply, producer_reply = await asyncio.gather(
            c.create_station(name, partitions_number=3, storage_type="memory"),
            c.create_producer(name, "p"),
        )
        assert station_reply == "" or "already exist" in station_reply, station_reply
        assert producer_reply["error"] == "", producer_reply

    run(body)


def test_last_two_members_leaving_together_delete_the_durable(run: Run, name: str) -> None:
    async def body(c: Client) -> None:
        assert await c.create_station(name) == ""
        for member in ("a", "b"):
            reply = await c.create_consumer(name, member, consumers_group="g")
            assert '"error":""' in reply, reply
        assert await c.api.consumer_info(f"{name}$1", "g") is not None
        replies = await asyncio.gather(
            c.destroy("consumer", name, "a"), c.destroy("consumer", name, "b")
        )
        assert list(replies) == ["", ""]
        assert await c.api.consumer_info(f"{name}$1", "g") is None

    run(body)
