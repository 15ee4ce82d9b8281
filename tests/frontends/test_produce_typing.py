"""What a type checker sees come back from ``produce``: a ``PubAck`` for a synchronous produce,
a ``ProduceHandle`` for an async one, on ``Producer`` and ``Connection`` alike (``mypy --strict``
on a snippet outside the repository, as a user's program is checked)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.typecheck import mypy_strict

SNIPPET = """
from typing import assert_type

import memphis_asyncio
import memphis_sync
from memphis_asyncio import ProduceHandle as AsyncHandle
from memphis_core import PubAck
from memphis_sync import ProduceHandle as Handle


def blocking(conn: memphis_sync.Connection, producer: memphis_sync.Producer, flag: bool) -> None:
    assert_type(producer.produce(b"x"), PubAck)
    assert_type(producer.produce(b"x", async_produce=False, msg_id="1"), PubAck)
    assert_type(producer.produce(b"x", async_produce=True, ack_wait=1.0), Handle)
    assert_type(producer.produce(b"x", async_produce=flag), PubAck | Handle)
    assert_type(conn.produce("s", "p", b"x", headers={"k": "v"}), PubAck)
    assert_type(conn.produce("s", "p", b"x", async_produce=True), Handle)
    assert_type(conn.produce("s", "p", b"x", async_produce=flag), PubAck | Handle)


async def asynchronous(
    conn: memphis_asyncio.Connection, producer: memphis_asyncio.Producer
) -> None:
    assert_type(await producer.produce(b"x"), PubAck)
    assert_type(await producer.produce(b"x", async_produce=True), AsyncHandle)
    assert_type(await conn.produce("s", "p", b"x", partition_number=1), PubAck)
    assert_type(await conn.produce("s", "p", b"x", async_produce=True), AsyncHandle)
"""


def test_produce_is_overloaded_on_async_produce(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(SNIPPET))
    mypy_strict(tmp_path, "app.py")
