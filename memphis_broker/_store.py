"""Control-plane state in JetStream key-value buckets (no other database).

The real broker keeps stations, producers, consumers, schemas and DLS rows in PostgreSQL
(docs/protocol.md §0, §9.4). We keep them in KV buckets so that any number of
control-plane instances share one view and a restarted instance loses nothing. Every
read-modify-write goes through a compare-and-set on the key's revision, which is what makes two
concurrent instances safe without a leader.

Cluster safety (docs/broker.md, "Cluster safety"): the buckets are created with
``min(3, cluster size)`` replicas so that losing one node loses no state, and every KV operation
is retried through JetStream leader elections within the current request's deadline
(``_jsapi.retrying``).

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
import base64
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from memphis_broker._jsapi import (
    ERR_MSG_NOT_FOUND,
    ERR_REPLICAS_NOT_SUPPORTED,
    JSApi,
    JSApiError,
    parse_headers,
    retrying,
)

__all__ = ["BUCKETS", "ERR_PLACEMENT", "Bucket", "Store", "key", "replica_choices"]

_PLAIN: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
BUCKETS: Final = ("stations", "schemas", "producers", "consumers", "dls")
_CAS_ATTEMPTS: Final = 50
# JetStream's "wrong last sequence" codes: a compare-and-set lost against another writer.
_WRONG_LAST_SEQ: Final = (10071, 10164)
# Up to this many keys a scan reads them one by one (no consumer to create and delete, which
# in a cluster is a meta-layer proposal each); above it, one ephemeral consumer streams them.
_ONE_BY_ONE_MAX: Final = 32
_PARALLEL_GETS: Final = 64
# A snapshot consumer that delivers nothing for this long is done: whatever is still missing
# is read key by key.
_IDLE_S: Final = 2.0
_MAX_REPLICAS: Final = 3
#: JetStream placement failures: "no suitable peers for placement", "insufficient resources".
ERR_PLACEMENT: Final = (10005, 10023)

Doc = dict[str, Any]
T = TypeVar("T")


def key(name: str) -> str:
    """Encode a name as one KV key token.

    Station/consumer names are ``[a-z0-9_.-]`` (docs/protocol.md §5.1); ``.`` would split the token
    so it becomes
    ``=`` (never valid in a name). Anything else (schema names are stored as sent) is hex with a
    ``/`` prefix, which cannot collide with the plain form.
    """
    if _PLAIN.fullmatch(name):
        return name.replace(".", "=")
    return "/" + name.encode().hex()


def replica_choices(nc: Client) -> tuple[int, ...]:
    """Replica counts to create internal state with, best first: ``min(3, cluster size)``.

    A single server gets 1. In a cluster the size is the number of client URLs the server
    advertised in the INFO it sent at connect; while the cluster is still forming that list
    may be short, so 3 is tried first and only a placement error (a smaller cluster) steps
    down to the advertised count. A cluster with ``no_advertise`` advertises nothing and is
    asked for 3.
    """
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return (1,)
    seen = len(info.get("connect_urls") or [])
    return (_MAX_REPLICAS, seen) if 0 < seen < _MAX_REPLICAS else (_MAX_REPLICAS,)


def _wrong_last(err: Exception) -> bool:
    return isinstance(err, nats.js.errors.KeyWrongLastSequenceError) or (
        isinstance(err, nats.js.errors.APIError)
        and getattr(err, "err_code", None) in _WRONG_LAST_SEQ
    )


class Bucket:
    """JSON documents in one KV bucket with compare-and-set helpers.

    Every operation retries transient JetStream errors (a leader election, a restarting node)
    within the current deadline; a retried write that had in fact succeeded shows up as a
    lost compare-and-set and is resolved by the CAS loop, so nothing is applied twice.
    """

    def __init__(self, kv: KeyValue, name: str, api: JSApi) -> None:
        self.kv = kv
        self.name = name
        self._api = api

    async def _kv(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        async def once(timeout: float) -> T:
            return await asyncio.wait_for(op(), timeout)

        return await retrying(once, f"{self.name} {what}")

    async def get(self, k: str) -> tuple[Doc, int] | None:
        try:
            entry = await self._kv(f"get {k}", lambda: self.kv.get(k))
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        doc: Doc = json.loads(entry.value)
        return doc, entry.revision or 0

    async def put(self, k: str, doc: Doc) -> int:
        data = json.dumps(doc).encode()
        return await self._kv(f"put {k}", lambda: self.kv.put(k, data))

    async def put_raw(self, k: str, data: bytes) -> int:
        return await self._kv(f"put {k}", lambda: self.kv.put(k, data))

    async def create(self, k: str, doc: Doc) -> int | None:
        """Create ``k`` only if absent; None if it already exists."""
        data = json.dumps(doc).encode()
        for _ in range(_CAS_ATTEMPTS):
            try:
                return await self._kv(f"create {k}", lambda: self.kv.create(k, data))
            except nats.js.errors.KeyWrongLastSequenceError:
                return None
            except nats.js.errors.KeyNotFoundError:
                # nats-py's create re-reads the key after "wrong last sequence" to tell a
                # deleted key from a live one. Right after a leader election that read can
                # miss a key the write saw: the state is in flux, so try again.
                await asyncio.sleep(0.05)
        raise RuntimeError(f"key {k!r} neither creatable nor readable")

    async def update(self, k: str, doc: Doc, rev: int) -> int | None:
        """Replace ``k`` if its revision is still ``rev``; None if it changed meanwhile."""
        data = json.dumps(doc).encode()
        try:
            return await self._kv(f"update {k}", lambda: self.kv.update(k, data, last=rev))
        except Exception as err:
            if _wrong_last(err):
                return None
            raise

    async def upsert(self, k: str, doc: Doc) -> int:
        """Make ``doc`` the value of ``k`` whether or not it exists, with revision checks.

        The same request applied twice, by one instance or two, leaves one key holding
        ``doc``; that is what makes a retried create idempotent.
        """
        for _ in range(_CAS_ATTEMPTS):
            rev = await self.create(k, doc)
            if rev is not None:
                return rev
            cur = await self.get(k)
            if cur is None:
                continue  # deleted between our create and get: create again
            rev = await self.update(k, doc, cur[1])
            if rev is not None:
                return rev
        raise RuntimeError(f"too much contention on key {k!r}")

    async def delete(self, k: str, rev: int | None = None) -> bool:
        """Delete ``k``; with ``rev``, only if it is still at that revision (False if not)."""
        try:
            await self._kv(f"delete {k}", lambda: self.kv.delete(k, last=rev))
        except Exception as err:
            if rev is not None and _wrong_last(err):
                return False
            raise
        return True

    async def mutate(self, k: str, fn: Callable[[Doc], Doc | None]) -> Doc | None:
        """Apply ``fn`` to the current document with CAS retries.

        ``fn`` returns the new document, or None to delete the key. Returns the new document
        (None if deleted or missing). ``fn`` may run more than once, so it must be pure.
        """
        for _ in range(_CAS_ATTEMPTS):
            cur = await self.get(k)
            if cur is None:
                return None
            doc, rev = cur
            new = fn(doc)
            if new is None:
                if await self.delete(k, rev):
                    return None
            elif await self.update(k, new, rev) is not None:
                return new
            await asyncio.sleep(0)
        raise RuntimeError(f"too much contention on key {k!r}")

    async def scan(self, pattern: str = ">") -> list[tuple[str, Doc]]:
        """All live (key, document) pairs whose key matches the subject ``pattern``."""
        return [(k, doc) for k, doc, _rev in await self.scan_entries(pattern)]

    async def scan_entries(self, pattern: str = ">") -> list[tuple[str, Doc, int]]:
        """A snapshot of (key, document, revision), oldest revision first.

        The key set is fixed first, in one atomic step (``STREAM.INFO`` with a subject filter):
        keys written after the scan began are left out, and every key that existed then and is
        not deleted meanwhile is returned exactly once. The values are then streamed by an
        ephemeral last-per-subject consumer; a key whose message that consumer misses (it was
        overwritten while the consumer ran, so its old message vanished) is read on its own.
        The value of a key is its latest one, never older than the moment the scan began.
        """
        stream, pre = f"KV_{self.name}", f"$KV.{self.name}."
        subjects = await self._subjects(stream, pre + pattern)
        if not subjects:
            return []
        found: dict[str, tuple[Doc | None, int]] = {}
        if len(subjects) > _ONE_BY_ONE_MAX:
            found = await self._stream_last(stream, pre + pattern, subjects)
        missing = [s for s in subjects if s not in found]
        sem = asyncio.Semaphore(_PARALLEL_GETS)

        async def one(subject: str) -> None:
            async with sem:
                got = await self._last(stream, subject)
            if got is not None:
                found[subject] = got

        await asyncio.gather(*(one(s) for s in missing))
        out = [(s[len(pre) :], doc, rev) for s, (doc, rev) in found.items() if doc is not None]
        out.sort(key=lambda e: e[2])
        return out

    async def _subjects(self, stream: str, subject_filter: str) -> set[str]:
        """Every subject of ``stream`` matching the filter, read atomically (paged)."""
        out: set[str] = set()
        offset = 0
        while True:
            info = await self._api.call(
                f"STREAM.INFO.{stream}", {"subjects_filter": subject_filter, "offset": offset}
            )
            page: dict[str, int] = info["state"].get("subjects") or {}
            out.update(page)
            offset += len(page)
            if not page or offset >= int(info.get("total") or 0):
                return out

    async def _last(self, stream: str, subject: str) -> tuple[Doc | None, int] | None:
        try:
            reply = await self._api.call(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        except JSApiError as err:
            if err.err_code == ERR_MSG_NOT_FOUND:
                return None
            raise
        msg = reply["message"]
        hdrs = parse_headers(base64.b64decode(msg["hdrs"])) if msg.get("hdrs") else {}
        data = base64.b64decode(msg.get("data") or "")
        return _decode(hdrs, data), int(msg["seq"])

    async def _stream_last(
        self, stream: str, subject_filter: str, want: set[str]
    ) -> dict[str, tuple[Doc | None, int]]:
        """Last messages of ``want`` through one ephemeral consumer; may come back short."""
        nc = self.kv._js._nc
        info = await self._api.call(
            f"CONSUMER.CREATE.{stream}",
            {
                "stream_name": stream,
                "config": {
                    "deliver_policy": "last_per_subject",
                    "filter_subject": subject_filter,
                    "ack_policy": "none",
                    "inactive_threshold": 30 * 1_000_000_000,
                    "mem_storage": True,
                    "num_replicas": 1,
                },
            },
        )
        consumer = info["name"]
        found: dict[str, tuple[Doc | None, int]] = {}
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        last_seen = loop.time()

        async def on_msg(msg: Msg) -> None:
            # A callback, not next_msg(): thousands of messages go through here per scan.
            nonlocal last_seen
            last_seen = loop.time()
            hdrs = msg.headers
            if hdrs and "Status" in hdrs:
                done.set()  # the pull ended (expired, or the batch is used up)
                return
            seq, pending = _ack_fields(msg.reply)
            if msg.subject in want:
                prev = found.get(msg.subject)
                if prev is None or prev[1] < seq:
                    found[msg.subject] = (_decode(hdrs or {}, msg.data), seq)
            # All wanted keys seen, or caught up with the stream: the rest is read key by key.
            if len(found) >= len(want) or pending == 0:
                done.set()

        try:
            if int(info["num_pending"]) == 0:
                return found
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=-1)
            try:
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    json.dumps(
                        {"batch": len(want) * 2 + 16, "expires": int(_IDLE_S * 4 * 1e9)}
                    ).encode(),
                    reply=inbox,
                )
                # Done, or idle for _IDLE_S (what is missing is then read key by key).
                while not done.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), _IDLE_S)
                    if loop.time() - last_seen >= _IDLE_S:
                        break
            finally:
                await sub.unsubscribe()
        finally:
            with contextlib.suppress(Exception):
                await self._api.call(f"CONSUMER.DELETE.{stream}.{consumer}")
        return found


def _ack_fields(reply: str) -> tuple[int, int]:
    """(stream sequence, pending) from a JetStream delivery's ``$JS.ACK...`` reply subject.

    The classic form has 9 tokens; the newer one adds a domain and an account hash in front
    (and may end with a random token), so count from the front of the numeric fields.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[10])
    return 0, -1


def _decode(headers: dict[str, str], data: bytes) -> Doc | None:
    if headers.get("KV-Operation") in ("DEL", "PURGE") or not data:
        return None
    doc: Doc = json.loads(data)
    return doc


class Store:
    """All buckets of one control plane."""

    def __init__(self, buckets: dict[str, Bucket]) -> None:
        self.stations = buckets["stations"]
        self.schemas = buckets["schemas"]
        self.producers = buckets["producers"]
        self.consumers = buckets["consumers"]
        self.dls = buckets["dls"]

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        dls_retention_s: float,
        replicas: tuple[int, ...] | None = None,
    ) -> Store:
        """Open (creating if needed) every bucket; safe when instances start concurrently.

        New buckets get the first replica count of ``replicas`` that JetStream can place
        (default: :func:`replica_choices`); an existing bucket is used as it is, whatever its
        replica count.
        """
        if replicas is None:
            replicas = replica_choices(js._nc)
        api = JSApi(js._nc)
        buckets: dict[str, Bucket] = {}
        for name in BUCKETS:
            bucket = f"memphis_{name}"
            # DLS rows expire after dls_retention_hours (docs/protocol.md §9.4, default 3 h).
            ttl = dls_retention_s if name == "dls" else None
            kv = await _open_kv(js, bucket, ttl, replicas)
            buckets[name] = Bucket(kv, bucket, api)
        return cls(buckets)


async def _open_kv(
    js: JetStreamContext, bucket: str, ttl: float | None, choices: tuple[int, ...]
) -> KeyValue:
    create: Callable[..., Awaitable[KeyValue]] = js.create_key_value

    async def attempt(timeout: float) -> KeyValue:
        try:
            return await asyncio.wait_for(js.key_value(bucket), timeout)
        except nats.js.errors.BucketNotFoundError:
            pass
        tries = list(choices)
        while True:
            replicas = tries.pop(0)
            try:
                return await asyncio.wait_for(
                    create(bucket=bucket, history=1, ttl=ttl, replicas=replicas), timeout
                )
            except nats.js.errors.APIError as err:
                code, err_code = getattr(err, "code", None), getattr(err, "err_code", None)
                if err_code == ERR_REPLICAS_NOT_SUPPORTED and replicas > 1:
                    tries = [1]  # a single server that looked clustered (no routes)
                    continue
                if err_code in ERR_PLACEMENT and tries:
                    continue  # a smaller cluster than 3: the advertised size
                if code == 503 or err_code in ERR_PLACEMENT:
                    raise
            # Another instance created it (maybe with other options) between our calls.
            return await asyncio.wait_for(js.key_value(bucket), timeout)

    return await retrying(attempt, f"open {bucket}")
