"""The JetStream fsync mode in force, as the broker names it (docs/broker.md, "Durability").

nats-server's ``jetstream.sync_interval`` decides what a PubAck promises: with ``always`` every
write is fsynced before it is acknowledged; with an interval (the default: every 2 minutes) an
acknowledged write may sit in the OS page cache until the next fsync, and is lost if every
replica's machine loses power before it. The launcher's ready line names the mode from
``--sync``; ``$memphis_broker_info`` (this module's request, our extension, not part of the
Memphis protocol) answers it from the server's own ``/varz``, for ``memphis station info``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["BROKER_INFO", "broker_info", "describe_fsync", "sync_setting_from_varz"]

#: Request subject: reply ``{"fsync": "<description>", "sync_always": bool,
#: "sync_interval_ns": int}``, or ``{"fsync": "unknown"}`` without a monitoring endpoint.
BROKER_INFO: Final = "$memphis_broker_info"
_NS_PER_MS: Final = 1_000_000
_DEFAULT_INTERVAL_NS: Final = 120_000_000_000  # nats-server's default: 2 minutes


def describe_fsync(sync: str | None) -> str:
    """``"fsync always"``, ``"fsync every <interval>"``, or for None (nats-server's default)
    ``"fsync every 2m (nats-server default)"``; ``sync`` is a :func:`sync_setting` text."""
    if sync is None:
        return "fsync every 2m (nats-server default)"
    if sync == "always":
        return "fsync always"
    return f"fsync every {sync}"


def sync_setting_from_varz(config: dict[str, Any]) -> str | None:
    """The sync setting of ``/varz``'s ``jetstream.config`` (None: the 2-minute default)."""
    if config.get("sync_always"):
        return "always"
    interval = int(config.get("sync_interval") or _DEFAULT_INTERVAL_NS)
    if interval == _DEFAULT_INTERVAL_NS:
        return None
    ms = interval // _NS_PER_MS
    for unit, size in (("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _varz_jetstream_config(monitor_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{monitor_url.rstrip('/')}/varz", timeout=5) as resp:
        config: dict[str, Any] = json.loads(resp.read())["jetstream"]["config"]
    return config


async def broker_info(monitor_urls: Sequence[str], budget: float = 5.0) -> dict[str, Any]:
    """The ``$memphis_broker_info`` reply, from the first monitoring endpoint that answers.

    A server that has just started may not show JetStream's config in ``/varz`` yet, and a node
    may be restarting: every endpoint is asked again, for up to ``budget`` seconds, before the
    answer is ``"unknown"``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while True:
        for url in monitor_urls:
            try:
                config = await asyncio.to_thread(_varz_jetstream_config, url)
            except (OSError, ValueError, KeyError):
                continue  # not serving, or JetStream not in /varz yet: ask the next one
            sync = sync_setting_from_varz(config)
            return {
                "fsync": describe_fsync(sync),
                "sync_always": sync == "always",
                "sync_interval_ns": int(config.get("sync_interval") or _DEFAULT_INTERVAL_NS),
            }
        if not monitor_urls or loop.time() >= deadline:
            return {"fsync": "unknown"}
        await asyncio.sleep(0.1)  # a bounded poll of the endpoints, not of the caller
