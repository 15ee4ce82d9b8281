"""Control-plane state in JetStream key-value buckets (no other database).

The real broker keeps stations, producers, consumers, schemas and DLS rows in PostgreSQL
(memphis-broker-protocol.md §0, §12.9). We keep them in KV buckets so that any number of
control-plane instances share one view and a restarted instance loses nothing. Every
read-modify-write goes through a compare-and-set on the key's revision, which is what makes two
concurrent instances safe without a leader.

Key layout (tokens are ``.``-separated; names are encoded by :func:`key`):

* ``memphis_stations``:  ``<station>``
* ``memphis_schemas``:   ``<schema>``
* ``memphis_producers``: ``<station>.<row id>``
* ``memphis_consumers``: ``<station>.<group>.<row id>``
* ``memphis_dls``:       ``m.<station>.<id>`` (row), ``i.<station>.<partition>.<seq>`` (merge
  index -> id), ``seq`` (id allocator: its revision numbers are unique across instances)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from memphis_broker._jsapi import JSApi

# How long a snapshot pull may wait for the messages it knows are there.
_SCAN_EXPIRES_NS = 10 * 1_000_000_000

__all__ = ["BUCKETS", "Bucket", "Store", "key"]

_PLAIN: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
BUCKETS: Final = ("stations", "schemas", "producers", "consumers", "dls")
_CAS_ATTEMPTS: Final = 50

Doc = dict[str, Any]


def key(name: str) -> str:
    """Encode a name as one KV key token.

    Station/consumer names are ``[a-z0-9_.-]`` (§3.1); ``.`` would split the token so it becomes
    ``=`` (never valid in a name). Anything else (schema names are stored as sent) is hex with a
    ``/`` prefix, which cannot collide with the plain form.
    """
    if _PLAIN.fullmatch(name):
        return name.replace(".", "=")
    return "/" + name.encode().hex()


class Bucket:
    """JSON documents in one KV bucket with compare-and-set helpers."""

    def __init__(self, kv: KeyValue, name: str, api: JSApi) -> None:
        self.kv = kv
        self.name = name
        self._api = api

    async def get(self, k: str) -> tuple[Doc, int] | None:
        try:
            entry = await self.kv.get(k)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        doc: Doc = json.loads(entry.value)
        return doc, entry.revision or 0

    async def put(self, k: str, doc: Doc) -> int:
        return await self.kv.put(k, json.dumps(doc).encode())

    async def create(self, k: str, doc: Doc) -> int | None:
        """Create ``k`` only if absent; None if it already exists."""
        try:
            return await self.kv.create(k, json.dumps(doc).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def delete(self, k: str) -> None:
        await self.kv.delete(k)

    async def mutate(self, k: str, fn: Callable[[Doc], Doc | None]) -> Doc | None:
        """Apply ``fn`` to the current document with CAS retries.

        ``fn`` returns the new document, or None to delete the key. Returns the new document
        (None if deleted or missing).
        """
        for _ in range(_CAS_ATTEMPTS):
            cur = await self.get(k)
            if cur is None:
                return None
            doc, rev = cur
            new = fn(doc)
            try:
                if new is None:
                    await self.kv.delete(k, last=rev)
                else:
                    await self.kv.update(k, json.dumps(new).encode(), last=rev)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
                await asyncio.sleep(0)
                continue
            return new
        raise RuntimeError(f"too much contention on key {k!r}")

    async def scan(self, pattern: str = ">") -> list[tuple[str, Doc]]:
        """All live (key, document) pairs whose key matches the subject ``pattern``.

        A snapshot through an ephemeral last-per-subject consumer: its ``num_pending`` at
        creation tells exactly how many messages to wait for, so no end-of-data guessing (the
        nats-py watcher can report "no more keys" before delivering them).
        """
        nc = self.kv._js._nc
        stream, pre = f"KV_{self.name}", f"$KV.{self.name}."
        info = await self._api.call(
            f"CONSUMER.CREATE.{stream}",
            {
                "stream_name": stream,
                "config": {
                    "deliver_policy": "last_per_subject",
                    "filter_subject": pre + pattern,
                    "ack_policy": "none",
                    "inactive_threshold": 30 * 1_000_000_000,
                    "mem_storage": True,
                    "num_replicas": 1,
                },
            },
        )
        consumer, pending = info["name"], int(info["num_pending"])
        out: list[tuple[str, Doc]] = []
        try:
            if pending == 0:
                return out
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            try:
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    # Not no_wait: a busy server may answer "no messages" (404) before the new
                    # consumer has them ready, and the snapshot would silently come up short.
                    # With an expiry the pull waits until all ``pending`` arrived.
                    json.dumps({"batch": pending, "expires": _SCAN_EXPIRES_NS}).encode(),
                    reply=inbox,
                )
                for _ in range(pending):
                    msg = await sub.next_msg(timeout=10.0)
                    hdrs = msg.headers or {}
                    if "Status" in hdrs:
                        break
                    if hdrs.get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
                        continue
                    out.append((msg.subject[len(pre) :], json.loads(msg.data)))
            finally:
                await sub.unsubscribe()
        finally:
            with contextlib.suppress(Exception):
                await self._api.call(f"CONSUMER.DELETE.{stream}.{consumer}")
        return out


class Store:
    """All buckets of one control plane."""

    def __init__(self, buckets: dict[str, Bucket]) -> None:
        self.stations = buckets["stations"]
        self.schemas = buckets["schemas"]
        self.producers = buckets["producers"]
        self.consumers = buckets["consumers"]
        self.dls = buckets["dls"]

    @classmethod
    async def open(cls, js: JetStreamContext, dls_retention_s: float) -> Store:
        """Open (creating if needed) every bucket; safe when instances start concurrently."""
        api = JSApi(js._nc)
        buckets: dict[str, Bucket] = {}
        for name in BUCKETS:
            bucket = f"memphis_{name}"
            # DLS rows expire after dls_retention_hours (§5.2, default 3 h).
            ttl = dls_retention_s if name == "dls" else None
            kv = await _open_kv(js, bucket, ttl)
            buckets[name] = Bucket(kv, bucket, api)
        return cls(buckets)


async def _open_kv(js: JetStreamContext, bucket: str, ttl: float | None) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        pass
    create: Callable[..., Awaitable[KeyValue]] = js.create_key_value
    try:
        return await create(bucket=bucket, history=1, ttl=ttl)
    except nats.js.errors.APIError:
        # Another instance created it between our two calls.
        return await js.key_value(bucket)
