"""What ``create_station`` finds when the station already exists (docs/protocol.md §5.3).

The broker returns an existing station unchanged and says nothing: its reply is the same empty
success whether it created the station or not, and it compares no option (docs/protocol.md
§5.4 step 3). A caller who asked for 3 partitions and got the 1 of an older station finds out
much later, if at all. So before the creation request the client reads the streams of the
station (JetStream ``STREAM.INFO``, docs/protocol.md §5.5), and the creation's result is the
list of options that differ from what the station has, for the frontend to log.

Only what the streams show is compared: retention, storage, replicas, the idempotency window
and (as "fewer" or "more") the number of partitions. The schema and the dead-letter settings
live in the broker's own records, which no request exposes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from memphis_core.nats._errors import MemphisError
from memphis_core.nats._frames import Msg

from ._dispatch import Dispatcher, ReplyHandler
from ._enums import RetentionType
from ._options import StationOptions

__all__ = ["LOOKUP_TIMEOUT", "look_up", "station_differences"]

#: Seconds to wait for a ``STREAM.INFO`` reply; past it the station is created without a check.
#: The check is best-effort and every ``create_station`` waits for it: JetStream answers a
#: healthy STREAM.INFO in milliseconds, so a second is plenty, and a refused lookup (an
#: application user without the JetStream API permission) ends at the server's ``-ERR``.
LOOKUP_TIMEOUT: Final = 1.0

_NS: Final = 1_000_000_000


def _normalised(opts: StationOptions) -> dict[str, Any]:
    """The options as the broker would store them (docs/protocol.md §5.4 steps 7, 9, 10)."""
    kind, value = opts.retention_type, opts.retention_value
    if kind is not RetentionType.ACK_BASED and value <= 0:
        kind, value = RetentionType.MAX_MESSAGE_AGE_SECONDS, 3600
    replicas = opts.replicas
    replicas = 1 if replicas <= 0 else 3 if replicas in (2, 4) else min(replicas, 5)
    window = opts.idempotency_window_ms
    window = 120_000 if window <= 0 else max(window, 100)
    return {
        "retention_type": kind.value,
        "retention_value": None if kind is RetentionType.ACK_BASED else value,
        "storage_type": opts.storage_type.value,
        "replicas": replicas,
        "idempotency_window": window / 1000,
    }


def _from_stream(config: dict[str, Any]) -> dict[str, Any]:
    """The station options a stream config shows (the mapping of docs/protocol.md §5.5)."""
    if config.get("retention") == "interest":
        kind, value = RetentionType.ACK_BASED.value, None
    elif int(config.get("max_msgs", -1)) > 0:
        kind, value = RetentionType.MESSAGES.value, int(config["max_msgs"])
    elif int(config.get("max_bytes", -1)) > 0:
        kind, value = RetentionType.BYTES.value, int(config["max_bytes"])
    else:
        kind, value = RetentionType.MAX_MESSAGE_AGE_SECONDS.value, int(config.get("max_age", 0))
        value //= _NS
    return {
        "retention_type": kind,
        "retention_value": value,
        "storage_type": config.get("storage"),
        "replicas": config.get("num_replicas"),
        "idempotency_window": int(config.get("duplicate_window", 0)) / _NS,
    }


def _config(payload: bytes | None) -> dict[str, Any] | None:
    """The ``config`` of a STREAM.INFO reply; None for an error (no such stream) or garbage."""
    if payload is None:
        return None
    try:
        reply = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(reply, dict) or "error" in reply:
        return None
    config = reply.get("config")
    return config if isinstance(config, dict) else None


def station_differences(
    opts: StationOptions,
    first: bytes | None,
    last: bytes | None = None,
    beyond: bytes | None = None,
) -> tuple[str, ...]:
    """How an existing station differs from ``opts``; empty when it does not exist.

    Args:
        opts: the options asked for.
        first: the STREAM.INFO reply for partition 1 (None: no reply).
        last: the reply for partition ``opts.partitions_number`` (when above 1).
        beyond: the reply for partition ``opts.partitions_number + 1``.

    Returns:
        One ``"<option>: asked <x>, the station has <y>"`` text per option that differs.
    """
    config = _config(first)
    if config is None:
        return ()  # no stream: a new station (or a legacy one, docs/protocol.md §5.8)
    asked, has = _normalised(opts), _from_stream(config)
    out = [
        f"{key}: asked {asked[key]!r}, the station has {has[key]!r}"
        for key in asked
        if asked[key] != has[key]
    ]
    n = opts.partitions_number
    if n > 1 and _config(last) is None:
        out.append(f"partitions_number: asked {n}, the station has fewer")
    elif _config(beyond) is not None:
        out.append(f"partitions_number: asked {n}, the station has more")
    return tuple(out)


class _Lookup(ReplyHandler):
    """The STREAM.INFO replies for one station; when the last is in, ``then(differences)``."""

    __slots__ = ("left", "opts", "replies", "then", "tokens")

    def __init__(
        self,
        opts: StationOptions,
        partitions: list[int],
        then: Callable[[tuple[str, ...], float], None],
    ) -> None:
        self.opts = opts
        self.then = then
        self.replies: dict[int, bytes | None] = dict.fromkeys(partitions)
        self.left = len(partitions)
        self.tokens: dict[int, int] = {}  # request token -> partition

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        self._answered(token, None if msg is None else msg.payload, now)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        # No JetStream API (no responders), a timeout, a lost connection: create as before,
        # without the check; the creation request reports what is really wrong.
        self._answered(token, None, now)

    def _answered(self, token: int, payload: bytes | None, now: float) -> None:
        partition = self.tokens[token]
        self.replies[partition] = payload
        self.left -= 1
        if self.left == 0:
            n = self.opts.partitions_number
            self.then(
                station_differences(
                    self.opts, self.replies[1], self.replies.get(n), self.replies[n + 1]
                ),
                now,
            )


def look_up(
    dispatcher: Dispatcher,
    opts: StationOptions,
    then: Callable[[tuple[str, ...], float], None],
    now: float,
) -> None:
    """Read the station's streams (partition 1, the last asked for, and the one after), then
    call ``then(differences, now)`` once, whatever the replies."""
    internal = opts.internal_name
    n = opts.partitions_number
    partitions = sorted({1, n, n + 1})
    lookup = _Lookup(opts, partitions, then)
    for partition in partitions:
        # ``replay=False``: a lookup cut by a reconnect fails at once (and the creation goes on)
        # rather than waiting for the next server.
        token = dispatcher.request(
            f"$JS.API.STREAM.INFO.{internal}${partition}",
            b"",
            lookup,
            now=now,
            timeout=LOOKUP_TIMEOUT,
            replay=False,
            refusable=True,
        )
        lookup.tokens[token] = partition
