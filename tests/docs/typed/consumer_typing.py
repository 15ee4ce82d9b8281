"""Type-checked by ``tests/docs/test_typing.py`` with ``mypy --strict``, never run.

Each function is what a user writes without a cast: a JSON station's message read as a dict, a
consumer's iteration closed early with ``aclosing`` / ``closing``, and the consume handler's
failure caught by its type, imported from the frontend.
"""

from __future__ import annotations

import contextlib

import memphis_asyncio
import memphis_sync
import memphis_trio


async def first_quantity_asyncio(consumer: memphis_asyncio.Consumer) -> int:
    async with contextlib.aclosing(aiter(consumer)) as messages:
        async for message in messages:
            order = message.data_deserialized()  # a JSON station: a dict
            quantity: int = order["quantity"]
            await message.ack()
            return quantity
    return 0


async def first_quantity_trio(consumer: memphis_trio.Consumer) -> int:
    async with contextlib.aclosing(aiter(consumer)) as messages:
        async for message in messages:
            quantity: int = message.data_deserialized()["quantity"]
            await message.ack()
            return quantity
    return 0


def first_quantity_sync(consumer: memphis_sync.Consumer) -> int:
    with contextlib.closing(iter(consumer)) as messages:
        for message in messages:
            quantity: int = message.data_deserialized()["quantity"]
            message.ack()
            return quantity
    return 0


def handler_failed(error: memphis_sync.MemphisError) -> bool:
    return isinstance(error, memphis_sync.ConsumeHandlerError)


async def handler_failed_async(error: memphis_asyncio.MemphisError) -> bool:
    return isinstance(
        error, (memphis_asyncio.ConsumeHandlerError, memphis_trio.ConsumeHandlerError)
    )
