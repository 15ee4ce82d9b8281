"""What ``create_station`` finds when the station already exists (docs/protocol.md §5.3).

The broker returns an existing station unchanged and says nothing: its reply is the same empty
success whether it created the station or not, and it compares no option (docs/protocol.md
§5.4 step 3). A caller who asked for 3 partitions and got the 1 of an older station finds out
much later, if at all. So before the creation request the client reads the streams of the
station (JetStream ``STREAM.INFO``, docs/protocol.md §5.5), and the creation's result is the
list of options that differ from what the station has, for the frontend to log. The lookups
are a query plan run by ``_introspection.Queries`` (with a shorter timeout), and a stream's
config is read into station options by ``_introspection.stream_settings``, as ``station.info()``
reads it.

Only what the streams show is compared: retention, storage, replicas, the idempotency window
and (as "fewer" or "more") the number of partitions. The schema and the dead-letter settings
live in the broker's own records, which no request exposes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from memphis_core.nats._errors import MemphisError

from ._enums import RetentionType
from ._introspection import Plan, Queries, Reply, stream_config, stream_settings
from ._options import StationOptions
from ._partitions import stream_name

__all__ = ["LOOKUP_TIMEOUT", "look_up", "station_differences"]

#: Seconds to wait for a ``STREAM.INFO`` reply; past it the station is created without a check.
#: The check is best-effort and every ``create_station`` waits for it: JetStream answers a
#: healthy STREAM.INFO in milliseconds, so a second is plenty, and a refused lookup (an
#: application user without the JetStream API permission) ends at the server's ``-ERR``.
LOOKUP_TIMEOUT: Final = 1.0


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
    """The station options a stream config shows, keyed as :func:`_normalised`'s."""
    has = stream_settings(config)._asdict()
    if has["retention_type"] == RetentionType.ACK_BASED:
        has["retention_value"] = None  # no value to compare: asking for one is no difference
    return has


def _config(reply: Reply | None) -> dict[str, Any] | None:
    return None if reply is None else stream_config(reply)


def station_differences(
    opts: StationOptions,
    first: Reply | None,
    last: Reply | None = None,
    beyond: Reply | None = None,
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


def _differences_plan(opts: StationOptions) -> Plan[tuple[str, ...]]:
    """Partition 1's stream, the last asked for and the one after, at once."""
    n = opts.partitions_number
    partitions = sorted({1, n, n + 1})
    subjects = [f"$JS.API.STREAM.INFO.{stream_name(opts.internal_name, p)}" for p in partitions]
    replies = yield [(subject, b"") for subject in subjects]
    by_partition = dict(zip(partitions, replies, strict=True))
    return station_differences(opts, by_partition[1], by_partition[n], by_partition[n + 1])


def look_up(
    queries: Queries,
    opts: StationOptions,
    then: Callable[[tuple[str, ...], float], None],
    now: float,
) -> None:
    """Read the station's streams (partition 1, the last asked for, and the one after), then
    call ``then(differences, now)`` once, whatever the replies.

    The requests are the client's own (refusable: a permissions ``-ERR`` ends one at once and
    is no server error of the user's), not replayed (one cut by a reconnect ends at once and the
    creation goes on), and wait at most :data:`LOOKUP_TIMEOUT`.
    """

    def done(outcome: tuple[str, ...] | MemphisError, now: float) -> None:
        # No JetStream API (no responders), a timeout, a refusal, a lost connection: create as
        # before, without the check; the creation request reports what is really wrong.
        then(() if isinstance(outcome, MemphisError) else outcome, now)

    queries.then("create_station lookup", _differences_plan(opts), done, now, LOOKUP_TIMEOUT)
