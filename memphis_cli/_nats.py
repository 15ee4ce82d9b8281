"""The dead-letter admin commands: what neither protocol a client speaks can do.

The Memphis client protocol has no request that lists or resends dead letters (the real
broker serves those only to its web console, over HTTP). ``dls`` therefore reads the rows that
``memphis_broker`` keeps in its KV buckets through the broker package's admin functions, on a
nats-py connection with the same credentials, so it needs ``memphis_broker`` installed.
Everything else the CLI shows (stations, schemas) comes from ``memphis_sync``'s introspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import ssl
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import nats
import nats.errors

from ._connection import describe
from ._errors import CliError

__all__ = ["Resent", "check_admin", "dls_list", "dls_resend", "fsync_mode"]

T = TypeVar("T")


def _servers(settings: Mapping[str, Any]) -> list[str]:
    servers = []
    for raw in str(settings["host"]).split(","):
        host = raw.strip()
        for scheme in ("http://", "https://", "nats://", "tls://"):
            if host.startswith(scheme):
                host = host[len(scheme) :]
                break
        if ":" not in host:
            host = f"{host}:{settings['port']}"
        servers.append(f"nats://{host}")
    return servers


def _tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext | None:
    cert, key, ca = settings["tls_cert"], settings["tls_key"], settings["tls_ca"]
    if not (cert or key or ca):
        return None
    if not (cert and key and ca):
        raise CliError("must provide a TLS cert/key/ca file (--tls-cert, --tls-key, --tls-ca)")
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def _auth_attempts(settings: Mapping[str, Any]) -> list[dict[str, str]]:
    # The same rules as connect(): exactly one of token and password; with a password the user
    # is "<name>$<account>" first and the plain name second (Memphis's own fallback).
    token, password = settings["connection_token"] or "", settings["password"] or ""
    if bool(token) == bool(password):
        raise CliError(
            "you have to connect with one of the following methods: connection token / password"
        )
    if token:
        return [{"token": token}]
    user = settings["username"]
    return [
        {"user": f"{user}${settings['account_id']}", "password": password},
        {"user": user, "password": password},
    ]


async def _ignore(_error: Exception) -> None:
    # nats-py logs connection errors by default; the CLI reports the raised one, once.
    return None


async def _open(settings: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A nats-py connection and the auth options that it was accepted with."""
    options: dict[str, Any] = {
        # Without "::" the broker does not take this for an SDK connection to track.
        "name": f"memphis-cli-{uuid.uuid4().hex[:8]}",
        "allow_reconnect": False,
        "connect_timeout": settings["timeout"],
        "error_cb": _ignore,
        "tls": _tls_context(settings),
    }
    attempts = _auth_attempts(settings)
    for i, auth in enumerate(attempts):
        try:
            # Bounded here: nats-py 2.16 keeps retrying a closed port past its own
            # connect_timeout (about 2 minutes); the CLI promises a fast one-line failure.
            nc = await asyncio.wait_for(
                nats.connect(_servers(settings), **options, **auth),
                timeout=float(settings["timeout"]) + 1.0,
            )
            return nc, {**auth, "tls": options["tls"]}
        except TimeoutError:
            raise OSError(
                f"cannot connect to {', '.join(_servers(settings))}: no answer within "
                f"{settings['timeout']} s"
            ) from None
        except nats.errors.AuthorizationError:
            if i == len(attempts) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Keep library log lines off stderr while nats-py runs, so an error stays one line.

    asyncio warns "returning true from eof_received() has no effect when using ssl" whenever
    a nats-py TLS connection closes; nothing is wrong, and errors reach us as exceptions.
    """
    loggers = [logging.getLogger(name) for name in ("asyncio", "nats")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _run(settings: Mapping[str, Any], body: Callable[..., Awaitable[T]]) -> T:
    """Run ``body(nc, auth)`` on a fresh nats-py connection; each failure becomes a CliError."""

    async def go() -> T:
        try:
            nc, auth = await _open(settings)
        except (nats.errors.Error, OSError, ssl.SSLError) as exc:
            text = str(exc) or type(exc).__name__
            raise CliError(f"cannot connect to {describe(settings)}: {text}") from exc
        try:
            return await body(nc, auth)
        finally:
            await nc.close()

    try:
        with _quiet_loggers():
            return asyncio.run(go())
    except (nats.errors.Error, TimeoutError) as exc:
        raise CliError(f"JetStream request failed: {exc or type(exc).__name__}") from exc


async def _api(nc: Any, subject: str, body: object = None) -> dict[str, Any]:
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=10.0)
    doc: dict[str, Any] = json.loads(reply.data)
    return doc


async def _fsync_mode(nc: Any) -> str:
    """The broker's JetStream fsync mode (``$memphis_broker_info``, docs/broker.md,
    "Durability"); "unknown" from a broker that does not answer it (the real Memphis)."""
    try:
        doc = await _api(nc, "$memphis_broker_info")
    except Exception:
        return "unknown"
    return str(doc.get("fsync") or "unknown")


def fsync_mode(settings: Mapping[str, Any]) -> str:
    """The broker's JetStream fsync mode, as :func:`_fsync_mode` reads it.

    Raises:
        CliError: JetStream unreachable or credentials refused.
    """

    async def body(nc: Any, _auth: dict[str, Any]) -> str:
        return await _fsync_mode(nc)

    return _run(settings, body)


def _admin() -> tuple[Any, Any, Any, Any]:
    """``memphis_broker``'s admin context, DLS functions and KV key encoder, or a CliError."""
    # Imported on use: memphis_broker is an optional extra, and only `memphis dls` needs it.
    # list_dls/resend are what `memphis-broker dls` runs; memphis_broker does not export them
    # from its top level (yet), hence the module paths.
    try:
        admin_context = importlib.import_module("memphis_broker").admin_context
        dls = importlib.import_module("memphis_broker._dls")
        key = importlib.import_module("memphis_broker._store").key
    except ImportError:
        raise CliError(
            "memphis dls needs memphis_broker (pip install 'memphis-sansio[broker]'): "
            "the Memphis client protocol has no request for dead letters"
        ) from None
    return admin_context, dls.list_dls, dls.resend, key


def check_admin() -> None:
    """Raise the one-line CliError now if ``memphis_broker`` is not installed."""
    _admin()


# Why a user may fail to open the control plane's store (docs/introspection.md, "As an
# application user"): said with the broker's own error, which alone does not tell what to do.
_STORE_REFUSED: Final = (
    "the dead letters live in the control plane's store, which a password-mode memphis-broker "
    "lets only root read: run memphis dls as root"
)


def _admin_run(settings: Mapping[str, Any], action: Callable[[Any], Awaitable[T]]) -> T:
    admin_context = _admin()[0]
    admin_error = importlib.import_module("memphis_broker._admin").AdminError

    async def body(_nc: Any, auth: dict[str, Any]) -> T:
        # admin_context opens a connection of its own (it owns its KV setup), with the auth
        # that _run's connection was accepted with.
        try:
            async with admin_context(_servers(settings), **auth) as ctx:
                return await action(ctx)
        except admin_error as exc:
            # Not a traceback: the broker is reachable and the credentials were accepted (by
            # _run's connection), so what fails here is the store, most often refused.
            hint = f" ({_STORE_REFUSED})" if settings["username"] != "root" else ""
            raise CliError(f"{exc}{hint}") from exc

    return _run(settings, body)


def dls_list(settings: Mapping[str, Any], station: str) -> list[dict[str, Any]]:
    """The station's dead-letter rows, oldest first (``memphis_broker`` brokers only).

    Raises:
        CliError: memphis_broker not installed, or JetStream unreachable.
    """
    list_dls = _admin()[1]
    rows: list[dict[str, Any]] = _admin_run(settings, lambda ctx: list_dls(ctx, station))
    return rows


@dataclass(frozen=True)
class Resent:
    """What a resend published: messages per consumer group, and which groups had a consumer
    connected (only those receive it: a resend is a core NATS publish, not stored)."""

    by_group: dict[str, int]
    live: frozenset[str]


def dls_resend(settings: Mapping[str, Any], station: str, ids: set[int] | None) -> Resent:
    """Resend the station's poison messages to their groups.

    Raises:
        CliError: memphis_broker not installed, or JetStream unreachable.
    """
    _ctx, list_dls, resend, key = _admin()

    async def action(ctx: Any) -> Resent:
        rows = [r for r in await list_dls(ctx, station) if ids is None or int(r["id"]) in ids]
        by_group = Counter(group for row in rows for group in row.get("poisoned_cgs") or ())
        # The control plane marks a consumer row inactive once its connection is gone
        # (docs/broker.md, connection tracking); a group with no active row has no subscriber.
        members = await ctx.store.consumers.scan(f"{key(station.lower())}.>")
        live = frozenset(str(r["consumers_group"]) for _k, r in members if r.get("is_active"))
        await resend(ctx, station, ids)
        return Resent(dict(by_group), live)

    result: Resent = _admin_run(settings, action)
    return result
