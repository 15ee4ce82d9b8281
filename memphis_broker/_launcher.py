"""The ``memphis-broker`` launcher: start nats-server (one, or a local cluster) and the control
plane, print the ready line, and supervise until SIGTERM/SIGINT (docs/broker.md, docs/cluster.md).

Argument parsing lives in ``__main__``; this module gets the parsed arguments.

Supervision: a single nats-server that exits ends the launcher (status 1, one
``memphis-broker: nats-server exited: ...`` line). In ``--cluster`` mode a node that exits is
restarted on its ports and store with backoff (:data:`RESTART_BACKOFF_S` doubling to
:data:`MAX_RESTART_BACKOFF_S`), each event one ``memphis-broker: node <i> ...`` line on stderr;
the launcher ends only on SIGTERM/SIGINT, or when a node fails to start
:data:`MAX_START_FAILURES` times in a row (status 1), as docs/cluster.md describes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final

import nats.errors

from memphis_broker._admin import AdminError, connect_once, jetstream_ready
from memphis_broker._cluster import LocalCluster
from memphis_broker._control import ControlPlane
from memphis_broker._durability import describe_fsync
from memphis_broker._embedded import PORT_ATTEMPTS
from memphis_broker._server import (
    CONTROL_USER,
    NatsServer,
    ServerConfig,
    ServerStartError,
    StoreInUseError,
    free_port,
)
from memphis_broker.console import ConsoleHandle, start_console

__all__ = [
    "MAX_RESTART_BACKOFF_S",
    "MAX_START_FAILURES",
    "PROG",
    "RESTART_BACKOFF_S",
    "fail",
    "serve",
]

log = logging.getLogger("memphis_broker.launcher")

PROG: Final = "memphis-broker"
_EXIT_FAILED: Final = 1
#: A cluster node that fails to start this many times in a row ends the launcher.
MAX_START_FAILURES: Final = 5
#: Seconds before the first restart of a node that exited; doubled after each failed start.
RESTART_BACKOFF_S: Final = 0.5
MAX_RESTART_BACKOFF_S: Final = 8.0


def _note(message: str) -> None:
    """One ``memphis-broker: <message>`` line on stderr: a failure, or a supervision event
    (a node exited, restarted) that is not one."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> int:
    """Print one ``memphis-broker: <message>`` line on stderr; return the failure status."""
    _note(message)
    return _EXIT_FAILED


class _Stop:
    """Why and when to stop: set from signal handlers, read by the start-up code (threads
    included, hence the threading.Event as well)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.cancel = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()
        self.cancel.set()


async def _exited(server: NatsServer) -> None:
    """Return when the server's process has exited."""
    pid = server.pid
    if pid is None or not server.running:
        return
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)  # readable once the process exits: no polling
    except (AttributeError, OSError):
        while server.running:
            await asyncio.sleep(0.1)  # no pidfd here: poll the child
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        if server.running:
            await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _race(
    main: Awaitable[Any] | None, stop: _Stop, children: list[NatsServer]
) -> tuple[str, int | None]:
    """Run ``main`` (if any) until it finishes, a signal arrives or a child exits.

    Returns ("done", None), ("stop", None) or ("exit", index of the child); ``main``'s own
    exception propagates.
    """
    waiters: dict[asyncio.Future[Any], tuple[str, int | None]] = {
        asyncio.ensure_future(stop.event.wait()): ("stop", None)
    }
    for i, child in enumerate(children):
        waiters[asyncio.ensure_future(_exited(child))] = ("exit", i)
    main_task = asyncio.ensure_future(main) if main is not None else None
    if main_task is not None:
        waiters[main_task] = ("done", None)
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in waiters:
            fut.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    if main_task is not None and main_task in done:
        main_task.result()
        return "done", None
    for fut in done:
        if waiters[fut][0] == "stop":
            return "stop", None
    return next(waiters[fut] for fut in done)


async def _wait_jetstream(url: str, auth: dict[str, Any], timeout: float, stop: _Stop) -> None:
    """Attach mode: wait until the server accepts us and JetStream answers ``$JS.API.INFO``.

    Raises:
        AdminError: credentials refused (at once), or not ready within ``timeout`` seconds
            (with the last reason).
    """
    deadline = time.monotonic() + timeout
    log.debug("waiting up to %g s for JetStream at %s", timeout, url)
    while True:
        remaining = deadline - time.monotonic()
        try:
            nc = await connect_once(url, timeout=max(0.2, min(2.0, remaining)), **auth)
            try:
                await jetstream_ready(nc, max(0.2, min(1.0, remaining)))
                return
            finally:
                await nc.close()
        except AdminError as err:
            if not err.retryable:
                raise
            last = str(err)
        if deadline - time.monotonic() <= 0:
            raise AdminError(f"JetStream at {url} not ready after {timeout:g} s: {last}")
        log.debug("JetStream not ready yet: %s", last)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.event.wait(), 0.25)
        if stop.reason:
            return


async def _start_plane(cp: ControlPlane, timeout: float) -> None:
    """Start a control plane, retrying transient JetStream failures for up to ``timeout`` s.

    Right after a cluster forms, a JetStream API request can go unanswered while the meta
    leader changes hands; the control plane's own start does not retry that.

    Raises:
        AdminError: still failing at the deadline (with the last reason).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(cp.start(), max(0.1, deadline - time.monotonic()))
            return
        except (nats.errors.Error, TimeoutError, OSError) as err:
            reason = str(err) or type(err).__name__
        await cp.stop()
        if time.monotonic() >= deadline:
            raise AdminError(f"the control plane did not start within {timeout:g} s: {reason}")
        log.debug("control plane start failed, retrying: %s", reason)
        await asyncio.sleep(0.2)  # back off before asking the servers again


async def _start_planes(planes: list[ControlPlane], timeout: float) -> None:
    """Start every control plane; on failure or cancellation none is left starting.

    The first starts alone: on a fresh cluster it creates the buckets and streams, and
    identical JetStream creates racing from several nodes at once sometimes go unanswered
    (seen with plain nats-py on nats-server 2.15), costing a whole request timeout.
    """
    tasks: list[asyncio.Future[None]] = []
    try:
        if planes:
            tasks.append(asyncio.ensure_future(_start_plane(planes[0], timeout)))
            await tasks[0]
        tasks += [asyncio.ensure_future(_start_plane(cp, timeout)) for cp in planes[1:]]
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _server_config(args: argparse.Namespace, users: dict[str, str] | None) -> ServerConfig:
    return ServerConfig(
        store_dir=Path(args.store_dir).resolve(),
        host=args.host,
        port=args.port or free_port(args.host),
        monitor_port=args.monitor_port or free_port(args.host),
        token=None if users is not None else args.token,
        users=users,
        root_password=args.root_password,
        sync_interval=args.sync,
    )


async def _stopped_within(stop: _Stop, seconds: float) -> bool:
    """Wait up to ``seconds`` for a stop signal (the restart backoff); whether it came."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.event.wait(), seconds)
    return stop.reason is not None


async def _restart_node(cluster: LocalCluster, index: int, stop: _Stop, wait: float) -> str | None:
    """Restart node ``index`` with backoff until it serves again.

    Returns None once it serves (or a stop signal arrived), else the failure line after
    :data:`MAX_START_FAILURES` failed starts in a row.
    """
    delay = RESTART_BACKOFF_S
    for attempt in range(1, MAX_START_FAILURES + 1):
        if await _stopped_within(stop, delay):
            return None
        try:
            await asyncio.to_thread(cluster.start_node, index, wait, stop.cancel)
        except (ServerStartError, StoreInUseError) as err:
            if stop.reason:
                return None
            reason = err.reason if isinstance(err, ServerStartError) else str(err)
            if attempt == MAX_START_FAILURES:
                return f"node {index} failed to start {attempt} times in a row: {reason}"
            delay = min(delay * 2, MAX_RESTART_BACKOFF_S)
            _note(f"node {index} did not start ({reason}); retrying in {delay:g} s")
            continue
        _note(f"node {index} restarted (attempt {attempt})")
        return None
    return None  # not reached: the last attempt returns


async def _supervise(
    stop: _Stop, children: list[NatsServer], cluster: LocalCluster | None, wait: float
) -> int:
    """Run until a stop signal (0) or a failure (1, its line printed)."""
    while True:
        outcome, which = await _race(None, stop, children)
        if outcome != "exit" or which is None:
            return 0
        reason = children[which].exit_reason()
        if cluster is None:
            stop.reason = stop.reason or "nats-server exited"
            return fail(f"nats-server exited: {reason}")
        _note(f"node {which} exited: {reason}; restarting it")
        failure = await _restart_node(cluster, which, stop, wait)
        if failure is not None:
            stop.reason = stop.reason or f"node {which} failed to start"
            return fail(failure)


async def serve(args: argparse.Namespace, users: dict[str, str] | None) -> int:
    """Run the broker as ``args`` say (the ``run`` arguments); ``users`` selects password mode.

    Returns the exit status (docs/broker.md, "Start-up and failures").
    """
    password_mode = users is not None
    mode = "user/password" if password_mode else "token"
    # Handlers first: a signal during start-up must stop what was started (nats-server runs
    # in its own session so that a terminal Ctrl-C reaches only us, and we stop it in order).
    stop = _Stop()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set, sig.name)
    server: NatsServer | None = None
    cluster: LocalCluster | None = None
    children: list[NatsServer] = []
    planes: list[ControlPlane] = []
    console: ConsoleHandle | None = None
    try:
        try:
            if args.nats_url:
                url, monitor = args.nats_url, args.monitor_url
                auth: dict[str, Any] = (
                    {"user": args.nats_user, "password": args.nats_password}
                    if args.nats_user
                    else {"token": args.token}
                )
                known = None if users is None else ["root", *users]
                await _wait_jetstream(url, auth, args.wait, stop)
                planes.append(
                    ControlPlane(url, users=known, monitor_url=monitor, **_cp(args, auth))
                )
                where = f"attached to {url}"
            elif args.cluster is not None:
                store = Path(args.store_dir).resolve()
                cluster = LocalCluster(
                    args.cluster,
                    store,
                    host=args.host,
                    port=args.port,
                    monitor_port=args.monitor_port,
                    cluster_port=args.cluster_port,
                    token=None if password_mode else args.token,
                    users=users,
                    root_password=args.root_password,
                    sync_interval=args.sync,
                )
                log.debug("starting %d nats-servers under %s", args.cluster, store)
                await asyncio.to_thread(cluster.start, args.wait, stop.cancel)
                log.debug("cluster ready, meta leader memphis-%s", cluster.meta_leader())
                children = cluster.nodes
                auth = cluster.control_plane_auth()
                known = list(cluster.nodes[0].config.all_users()) if password_mode else None
                # One control-plane instance per node, each on its own node, as in production
                # (docs/cluster.md). Clients may be on any node, so connection tracking reads
                # every node's /connz; a node that does not answer (restarting) only delays
                # marking clients inactive, never marks them inactive by mistake.
                for url in cluster.urls:
                    planes.append(
                        ControlPlane(
                            url, users=known, monitor_url=cluster.monitor_urls, **_cp(args, auth)
                        )
                    )
                where = (
                    f"servers {cluster.servers} (cluster of {args.cluster}, store {store}, "
                    f"JetStream meta leader memphis-{cluster.meta_leader()})"
                )
            else:
                # Ports picked here (``--port 0``) are picked again if one was taken before
                # nats-server bound it; ports the user gave are never changed.
                auto_ports = not args.port or not args.monitor_port
                for attempt in range(1, PORT_ATTEMPTS + 1):
                    config = _server_config(args, users)
                    # ``server`` too, so that ``finally`` stops it whatever happens.
                    server = started = NatsServer(config)
                    log.debug("starting nats-server: config %s", started.conf_path)
                    try:
                        await asyncio.to_thread(started.start, args.wait, stop.cancel)
                        break
                    except ServerStartError as err:
                        if not (err.port_conflict and auto_ports) or attempt == PORT_ATTEMPTS:
                            raise
                log.debug("nats-server ready (server id %s)", started.server_id)
                children = [started]
                url = f"nats://{config.host}:{config.port}"
                monitor = f"http://{config.host}:{config.monitor_port}"
                auth = (
                    {"user": CONTROL_USER, "password": config.control_password}
                    if password_mode
                    else {"token": args.token}
                )
                known = list(config.all_users()) if password_mode else None
                planes.append(
                    ControlPlane(url, users=known, monitor_url=monitor, **_cp(args, auth))
                )
                where = f"{url} (store {config.store_dir}, monitoring {monitor})"
        except (ServerStartError, StoreInUseError, AdminError) as err:
            if stop.reason:
                return 0
            code = fail(str(err))
            if isinstance(err, ServerStartError) and err.log_tail:
                log.debug("nats-server log:\n%s", err.log_tail)
            return code
        if stop.reason:
            return 0
        try:
            outcome, which = await _race(_start_planes(planes, args.wait), stop, children)
        except AdminError as err:
            return fail(str(err))
        if outcome == "exit" and which is not None:
            # A node that dies before the broker is ready is a start-up failure, not a restart.
            node = "nats-server" if cluster is None else f"node {which}"
            stop.reason = stop.reason or f"{node} exited"
            return fail(f"{node} exited: {children[which].exit_reason()}")
        if outcome != "done":
            return 0
        fsync = describe_fsync(args.sync)
        console, console_note = await start_console(
            args.console_port,
            args.host,
            planes,
            cluster.urls if cluster else [url],
            cluster.monitor_urls if cluster else [monitor] if monitor else [],
        )
        print(f"{PROG} ready: {where}{console_note}, {mode} auth, {fsync}", flush=True)
        return await _supervise(stop, children, cluster, args.wait)
    finally:
        if console is not None:
            await console.stop()
        if planes:
            await asyncio.gather(*(cp.stop() for cp in planes), return_exceptions=True)
        if server is not None:
            await asyncio.to_thread(server.stop)
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        if stop.reason:
            print(f"{PROG} stopped ({stop.reason})", flush=True)


def _cp(args: argparse.Namespace, auth: dict[str, Any]) -> dict[str, Any]:
    return {"dls_retention_hours": args.dls_retention_hours, **auth}
