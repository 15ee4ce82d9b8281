"""Thin, exact calls to the stock JetStream API (``$JS.API.*``) and NATS header parsing.

We call the API with raw JSON instead of nats-py's dataclasses so that the stream and consumer
configs are byte-for-byte what docs/protocol.md §5.5/§7.3 prescribe (durations in
integer nanoseconds, no float rounding) and so that JetStream errors can be replied in the
broker's own format ``<description> (<err_code>)`` (docs/protocol.md §11.3, "internal JetStream
calls").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client

__all__ = [
    "DEFAULT_BUDGET",
    "ERR_CONSUMER_NOT_FOUND",
    "ERR_MSG_NOT_FOUND",
    "ERR_NO_PEERS",
    "ERR_REPLICAS_NOT_SUPPORTED",
    "ERR_STREAM_NOT_FOUND",
    "JSApi",
    "JSApiError",
    "deadline",
    "parse_headers",
    "retrying",
    "transient",
]

ERR_STREAM_NOT_FOUND: Final = 10059
ERR_CONSUMER_NOT_FOUND: Final = 10014
ERR_MSG_NOT_FOUND: Final = 10037
ERR_REPLICAS_NOT_SUPPORTED: Final = 10074
#: JetStream's "temporarily unavailable" (no meta leader yet, e.g. during an election).
ERR_JS_UNAVAILABLE: Final = 10008
#: "no suitable peers for placement" (followed by the reasons, if any) and "insufficient
#: resources": JetStream could not place a stream's or consumer's replicas.
ERR_NO_PEERS: Final = 10005
ERR_INSUFFICIENT_RESOURCES: Final = 10023
# Reasons nats-server appends to ERR_NO_PEERS's description while a peer is down or has not
# yet reported its resources since it (re)joined. The bare description, without a reason,
# means the cluster is smaller than the replica count: final, never retried.
_PEERS_COMING_BACK: Final = ("peer offline", "miscellaneous issue")
#: Seconds a piece of control-plane work may spend retrying transient errors when no request
#: deadline is set (background loops). Request handlers set their own (see :func:`deadline`).
DEFAULT_BUDGET: Final = 15.0
# One attempt waits at most this long at first, then a little longer (capped by the
# deadline): a request lost during a leader election (a stream without a leader answers
# nothing) costs at most a few seconds after the election ends, not the whole budget.
_FIRST_ATTEMPT_S: Final = 2.0
_MAX_ATTEMPT_S: Final = 3.0
_MAX_BACKOFF_S: Final = 1.0

log = logging.getLogger("memphis_broker.control")
T = TypeVar("T")
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "memphis_control_deadline", default=None
)


class JSApiError(Exception):
    """A JetStream API error reply; ``str()`` is the broker's ``<description> (<err_code>)``."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} ({err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


def transient(err: BaseException) -> bool:
    """Whether ``err`` is what a JetStream leader election or a restarting node looks like.

    A request to a stream without a leader gets no reply (timeout), a node whose JetStream is
    not up yet has no responders on ``$JS.API`` (503), and the meta layer answers "temporarily
    unavailable". While a peer is down or rejoining, the meta leader cannot place replicas on
    it: "no suitable peers for placement, peer offline" (10005) or "insufficient resources"
    (10023) until the peer reports in again (docs/cluster.md, "Placement while a node
    restarts"). All of them resolve by themselves within seconds, so they are retried.
    """
    if isinstance(err, JSApiError):
        return _transient_reply(err.code, err.err_code, err.description)
    if isinstance(err, nats.js.errors.APIError):
        # Some nats-py subclasses (the KV "not found" family) never set these attributes.
        return _transient_reply(
            getattr(err, "code", None),
            getattr(err, "err_code", None),
            getattr(err, "description", None),
        )
    return isinstance(
        err,
        TimeoutError
        | nats.errors.NoRespondersError
        | nats.errors.ConnectionReconnectingError
        | nats.js.errors.NoStreamResponseError,
    )


def _transient_reply(code: int | None, err_code: int | None, description: str | None) -> bool:
    if code == 503 or err_code in (ERR_JS_UNAVAILABLE, ERR_INSUFFICIENT_RESOURCES):
        return True
    return err_code == ERR_NO_PEERS and any(r in (description or "") for r in _PEERS_COMING_BACK)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every :func:`retrying` call in this task (and tasks it spawns) to ``seconds``
    from now. Used per control request so retries end before the SDK gives up waiting."""
    token = _DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


async def retrying(op: Callable[[float], Awaitable[T]], what: str) -> T:
    """Run ``op(timeout_s)`` and retry it with backoff while it fails transiently (see
    :func:`transient`).

    Each attempt gets a timeout in seconds (2 s, then 3 s) that ``op`` must honour. Retries
    happen only while the current :func:`deadline` (or :data:`DEFAULT_BUDGET` seconds from
    now) has time left; the first attempt always gets its full 2 s, so a long request (a
    station with many partitions) that used up its budget still completes its work when
    JetStream is healthy. The last error is raised once time is up. ``op`` must be safe to
    repeat: every caller's operation is idempotent or compare-and-set.
    """
    loop = asyncio.get_running_loop()
    end = _DEADLINE.get()
    if end is None:
        end = loop.time() + DEFAULT_BUDGET
    attempt_s, backoff, attempt = _FIRST_ATTEMPT_S, 0.05, 1
    while True:
        left = end - loop.time()
        try:
            return await op(attempt_s if attempt == 1 else max(0.05, min(attempt_s, left)))
        except Exception as err:
            left = end - loop.time()
            if not transient(err) or left <= backoff:
                raise
            log.debug("%s: transient %s (attempt %d), retrying", what, _describe(err), attempt)
        # Backoff between attempts of a bounded retry loop, not synchronisation.
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
        attempt_s = min(attempt_s * 1.5, _MAX_ATTEMPT_S)
        attempt += 1


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


class JSApi:
    """JetStream API calls over an existing nats-py connection."""

    def __init__(self, nc: Client, prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._prefix = prefix

    async def call(self, api: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Request ``$JS.API.<api>``; return the JSON reply or raise JSApiError.

        Transient failures (a leader election, a node restarting) are retried within the
        current deadline; every API used here is idempotent, so a repeat is safe.
        """
        payload = json.dumps(body).encode() if body is not None else b""
        subject = f"{self._prefix}.{api}"

        async def once(timeout: float) -> dict[str, Any]:
            msg = await self._nc.request(subject, payload, timeout=timeout)
            reply: dict[str, Any] = json.loads(msg.data)
            err = reply.get("error")
            if err:
                raise JSApiError(
                    int(err.get("code", 0)),
                    int(err.get("err_code", 0)),
                    str(err.get("description")),
                )
            return reply

        return await retrying(once, subject)

    async def stream_info(self, stream: str) -> dict[str, Any] | None:
        try:
            return await self.call(f"STREAM.INFO.{stream}")
        except JSApiError as err:
            if err.err_code == ERR_STREAM_NOT_FOUND:
                return None
            raise

    async def list_streams(self) -> list[dict[str, Any]]:
        """Every stream's info (``STREAM.LIST``, page by page)."""
        streams: list[dict[str, Any]] = []
        while True:
            page = await self.call("STREAM.LIST", {"offset": len(streams)})
            batch: list[dict[str, Any]] = page.get("streams") or []
            streams += batch
            if not batch or len(streams) >= int(page.get("total", 0)):
                return streams

    async def create_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.call(f"STREAM.CREATE.{config['name']}", config)

    async def delete_stream(self, stream: str) -> None:
        """Delete a stream; a missing stream is not an error (docs/protocol.md §5.7 ignores "stream
        not found")."""
        try:
            await self.call(f"STREAM.DELETE.{stream}")
        except JSApiError as err:
            if err.err_code != ERR_STREAM_NOT_FOUND:
                raise

    async def consumer_info(self, stream: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.call(f"CONSUMER.INFO.{stream}.{name}")
        except JSApiError as err:
            if err.err_code in (ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND):
                return None
            raise

    async def create_consumer(self, stream: str, config: dict[str, Any]) -> dict[str, Any]:
        # docs/protocol.md §7.3: the broker uses the durable-create endpoint; an identical or
        # editable-only
        # change is accepted by JetStream as an update.
        body = {"stream_name": stream, "config": config}
        return await self.call(f"CONSUMER.DURABLE.CREATE.{stream}.{config['durable_name']}", body)

    async def delete_consumer(self, stream: str, name: str) -> None:
        """Delete a durable, ignoring "consumer not found" and "stream not found" (docs/protocol.md
        §7.12)."""
        try:
            await self.call(f"CONSUMER.DELETE.{stream}.{name}")
        except JSApiError as err:
            if err.err_code not in (ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND):
                raise

    async def get_msg(self, stream: str, seq: int) -> tuple[bytes, dict[str, str], str] | None:
        """``STREAM.MSG.GET`` by sequence (docs/protocol.md §9.1 step 4): (data, headers, RFC 3339
        time) or None."""
        try:
            reply = await self.call(f"STREAM.MSG.GET.{stream}", {"seq": seq})
        except JSApiError as err:
            if err.err_code in (ERR_MSG_NOT_FOUND, ERR_STREAM_NOT_FOUND):
                return None
            raise
        msg = reply["message"]
        data = base64.b64decode(msg.get("data") or "")
        hdrs = parse_headers(base64.b64decode(msg["hdrs"])) if msg.get("hdrs") else {}
        return data, hdrs, str(msg.get("time", ""))


def parse_headers(block: bytes) -> dict[str, str]:
    """Parse a ``NATS/1.0`` header block; the last value of a repeated key wins."""
    lines = block.decode("utf-8", errors="replace").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out
