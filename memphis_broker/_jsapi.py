"""Thin, exact calls to the stock JetStream API (``$JS.API.*``) and NATS header parsing.

We call the API with raw JSON instead of nats-py's dataclasses so that the stream and consumer
configs are byte-for-byte what memphis-broker-protocol.md §3.3/§4.2 prescribe (durations in
integer nanoseconds, no float rounding) and so that JetStream errors can be replied in the
broker's own format ``<description> (<err_code>)`` (§10, "internal JetStream calls").
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

from nats.aio.client import Client

__all__ = [
    "ERR_CONSUMER_NOT_FOUND",
    "ERR_MSG_NOT_FOUND",
    "ERR_REPLICAS_NOT_SUPPORTED",
    "ERR_STREAM_NOT_FOUND",
    "JSApi",
    "JSApiError",
    "parse_headers",
]

ERR_STREAM_NOT_FOUND: Final = 10059
ERR_CONSUMER_NOT_FOUND: Final = 10014
ERR_MSG_NOT_FOUND: Final = 10037
ERR_REPLICAS_NOT_SUPPORTED: Final = 10074
_TIMEOUT: Final = 10.0


class JSApiError(Exception):
    """A JetStream API error reply; ``str()`` is the broker's ``<description> (<err_code>)``."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} ({err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class JSApi:
    """JetStream API calls over an existing nats-py connection."""

    def __init__(self, nc: Client, prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._prefix = prefix

    async def call(self, api: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Request ``$JS.API.<api>``; return the JSON reply or raise JSApiError."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self._nc.request(f"{self._prefix}.{api}", payload, timeout=_TIMEOUT)
        reply: dict[str, Any] = json.loads(msg.data)
        err = reply.get("error")
        if err:
            raise JSApiError(
                int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description"))
            )
        return reply

    async def stream_info(self, stream: str) -> dict[str, Any] | None:
        try:
            return await self.call(f"STREAM.INFO.{stream}")
        except JSApiError as err:
            if err.err_code == ERR_STREAM_NOT_FOUND:
                return None
            raise

    async def create_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.call(f"STREAM.CREATE.{config['name']}", config)

    async def delete_stream(self, stream: str) -> None:
        """Delete a stream; a missing stream is not an error (§2.2 ignores "stream not found")."""
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
        # §4.2: the broker uses the durable-create endpoint; an identical or editable-only
        # change is accepted by JetStream as an update.
        body = {"stream_name": stream, "config": config}
        return await self.call(f"CONSUMER.DURABLE.CREATE.{stream}.{config['durable_name']}", body)

    async def delete_consumer(self, stream: str, name: str) -> None:
        """Delete a durable, ignoring "consumer not found" and "stream not found" (§2.6)."""
        try:
            await self.call(f"CONSUMER.DELETE.{stream}.{name}")
        except JSApiError as err:
            if err.err_code not in (ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND):
                raise

    async def get_msg(self, stream: str, seq: int) -> tuple[bytes, dict[str, str], str] | None:
        """``STREAM.MSG.GET`` by sequence (§5.1 step 4): (data, headers, RFC 3339 time) or None."""
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
