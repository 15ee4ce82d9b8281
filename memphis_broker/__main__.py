"""``memphis-broker`` / ``python -m memphis_broker``: run the broker, or operate on one.

memphis-broker [run] [--port 6666] [--store-dir ./.memphis] [--token memphis | --password-auth]
memphis-broker --cluster 3                   # a local 3-node JetStream cluster (docs/cluster.md)
memphis-broker --nats-url nats://h:4222      # attach a control plane to an existing server
memphis-broker dls list --station S          # poison / schema-failure rows
memphis-broker dls resend --station S [--id N ...]
memphis-broker dls drop --station S [--id N ...]   # delete rows without resending
memphis-broker station set-dls --station S [--poison on|off] [--schemaverse on|off]
memphis-broker station remove --station S    # with a remove_station push to the SDKs

Output contract (docs/broker.md, "Start-up and failures"): one ``memphis-broker ready: ...`` line
on stdout once serving, one ``memphis-broker stopped (...)`` line when it stops; every failure is
one ``memphis-broker: ...`` line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import nats.errors

from memphis_broker._admin import (
    AdminError,
    admin_context,
    connect_once,
    jetstream_ready,
    remove_station,
    set_dls_configuration,
)
from memphis_broker._cluster import MAX_SIZE, LocalCluster
from memphis_broker._control import ControlPlane
from memphis_broker._dls import drop, list_dls, resend
from memphis_broker._server import (
    CONTROL_USER,
    NatsServer,
    ServerConfig,
    ServerStartError,
    StoreInUseError,
    free_port,
    sync_setting,
)
from memphis_broker.console import ConsoleHandle, start_console
from memphis_broker.console import add_arguments as add_console_arguments

__all__ = ["main"]

log = logging.getLogger("memphis_broker.launcher")

# docs/protocol.md §10.4: the real broker's username rule.
_USERNAME: Final = re.compile(r"[a-z0-9_.-]{1,60}")
_PROG: Final = "memphis-broker"
_EXIT_FAILED: Final = 1


def _fail(message: str) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)
    return _EXIT_FAILED


def _user_arg(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not _USERNAME.fullmatch(name) or not password:
        raise argparse.ArgumentTypeError(f"expected name:password with name [a-z0-9_.-]: {text!r}")
    return name, password


def _sync_arg(text: str) -> str:
    try:
        value = sync_setting(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    assert value is not None
    return value


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


def _cluster_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 2 <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"cluster size must be 2 to {MAX_SIZE}: {text!r}")
    return value


def _port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535: {text!r}")
    return value


def _load_users(args: argparse.Namespace) -> dict[str, str]:
    users: dict[str, str] = dict(args.user or [])
    if args.users_file:
        doc = json.loads(Path(args.users_file).read_text(encoding="utf-8"))
        entries = doc.get("users", doc) if isinstance(doc, dict) else {}
        for name, pw in entries.items():
            users[_user_arg(f"{name}:{pw}")[0]] = str(pw)
    return users


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default in ``--help``; no "(default: None)" for options without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _conn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", default="nats://127.0.0.1:6666", help="NATS server to use")
    p.add_argument("--token", default="memphis", help="connection token (token mode)")
    p.add_argument("--nats-user", default=None, help="NATS user (password mode)")
    p.add_argument("--nats-password", default=None, help="that user's password")
    p.add_argument(
        "--timeout",
        type=_positive(float),
        default=3.0,
        help="seconds to wait for the connection and for JetStream",
    )


def _auth(args: argparse.Namespace) -> dict[str, Any]:
    if args.nats_user:
        return {"user": args.nats_user, "password": args.nats_password}
    return {"token": args.token}


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Memphis-compatible broker: nats-server with JetStream plus the control plane",
        formatter_class=_Formatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address of every port")
    p.add_argument(
        "--port", type=_port_arg, default=6666, help="client port (0: a free one); see --cluster"
    )
    p.add_argument(
        "--monitor-port",
        type=_port_arg,
        default=8222,
        help="nats-server monitoring port (0: a free one)",
    )
    p.add_argument(
        "--store-dir", default="./.memphis", help="JetStream store, config and log (locked)"
    )
    p.add_argument("--token", default="memphis", help="connection token (token mode)")
    p.add_argument(
        "--password-auth",
        action="store_true",
        help="user/password mode: root$1 plus the application users",
    )
    p.add_argument("--root-password", default="memphis", help="root's password (password mode)")
    p.add_argument(
        "--user",
        action="append",
        type=_user_arg,
        metavar="NAME:PASSWORD",
        help="application user (password mode; repeatable)",
    )
    p.add_argument("--users-file", help='JSON {"users": {"name": "password"}}')
    p.add_argument(
        "--sync",
        type=_sync_arg,
        default=None,
        metavar="always|INTERVAL",
        help="JetStream fsync: 'always' (every write, before its ack) or an interval "
        "(seconds, or '100ms', '1s', '2m'); default: nats-server's, every 2m "
        "(see docs/broker.md, Durability)",
    )
    p.add_argument(
        "--cluster",
        type=_cluster_size,
        default=None,
        metavar="N",
        help=f"run a local N-node JetStream cluster (2..{MAX_SIZE}); node i uses --port + i, "
        "--monitor-port + i and <store-dir>/node-i (docs/cluster.md)",
    )
    p.add_argument(
        "--cluster-port",
        type=_port_arg,
        default=0,
        help="with --cluster: route port of node 0, node i uses + i (0: free ports)",
    )
    p.add_argument(
        "--nats-url",
        default=None,
        help="attach the control plane to this NATS server instead of starting one",
    )
    p.add_argument(
        "--monitor-url",
        default=None,
        help="with --nats-url: monitoring endpoint for connection tracking",
    )
    p.add_argument("--nats-user", default=None, help="with --nats-url: control-plane NATS user")
    p.add_argument("--nats-password", default=None, help="with --nats-url: that user's password")
    p.add_argument(
        "--wait",
        type=_positive(float),
        default=30.0,
        help="seconds to wait for nats-server / JetStream to be ready before giving up",
    )
    p.add_argument(
        "--dls-retention-hours", type=float, default=3.0, help="age at which DLS rows expire"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging of the memphis_broker loggers"
    )
    add_console_arguments(p)
    return p


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


async def _serve(args: argparse.Namespace) -> int:
    password_mode = args.password_auth or bool(args.user) or bool(args.users_file)
    users = _load_users(args) if password_mode else None
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
    code = 0
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
                # (docs/cluster.md). Connection tracking polls a single server's /connz, which
                # would mark clients of the other nodes inactive, so it stays off here.
                for url in cluster.urls:
                    planes.append(ControlPlane(url, users=known, **_cp(args, auth)))
                where = (
                    f"servers {cluster.servers} (cluster of {args.cluster}, store {store}, "
                    f"JetStream meta leader memphis-{cluster.meta_leader()})"
                )
            else:
                config = _server_config(args, users)
                server = NatsServer(config)
                log.debug("starting nats-server: config %s", server.conf_path)
                await asyncio.to_thread(server.start, args.wait, stop.cancel)
                log.debug("nats-server ready (server id %s)", server.server_id)
                children = [server]
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
            code = _fail(str(err))
            if isinstance(err, ServerStartError) and err.log_tail:
                log.debug("nats-server log:\n%s", err.log_tail)
            return code
        if stop.reason:
            return 0
        try:
            outcome, which = await _race(_start_planes(planes, args.wait), stop, children)
        except AdminError as err:
            return _fail(str(err))
        if outcome == "done":
            console, console_note = await start_console(
                args.console_port,
                args.host,
                planes,
                cluster.urls if cluster else [url],
                cluster.monitor_urls if cluster else [monitor] if monitor else [],
            )
            print(f"{_PROG} ready: {where}{console_note}, {mode} auth", flush=True)
            outcome, which = await _race(None, stop, children)
        if outcome == "exit" and which is not None:
            node = "nats-server" if cluster is None else f"node {which}"
            code = _fail(f"{node} exited: {children[which].exit_reason()}")
            stop.reason = stop.reason or f"{node} exited"
        return code
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
            print(f"{_PROG} stopped ({stop.reason})", flush=True)


def _cp(args: argparse.Namespace, auth: dict[str, Any]) -> dict[str, Any]:
    return {"dls_retention_hours": args.dls_retention_hours, **auth}


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG, description="operate on a running broker", formatter_class=_Formatter
    )
    sub = p.add_subparsers(dest="area", required=True)
    dls = sub.add_parser("dls", formatter_class=_Formatter).add_subparsers(
        dest="action", required=True
    )
    for name in ("list", "resend", "drop"):
        a = dls.add_parser(name, formatter_class=_Formatter)
        a.add_argument("--station", required=True, help="station name")
        _conn_args(a)
        if name != "list":
            a.add_argument("--id", type=int, action="append", help="only these DLS ids")
    station = sub.add_parser("station", formatter_class=_Formatter).add_subparsers(
        dest="action", required=True
    )
    s = station.add_parser("set-dls", formatter_class=_Formatter)
    s.add_argument("--station", required=True, help="station name")
    s.add_argument("--poison", choices=("on", "off"), help="store poison messages in the DLS")
    s.add_argument("--schemaverse", choices=("on", "off"), help="store schema failures in the DLS")
    _conn_args(s)
    r = station.add_parser("remove", formatter_class=_Formatter)
    r.add_argument("--station", required=True, help="station name")
    _conn_args(r)
    return p


def _flag(v: str | None) -> bool | None:
    return None if v is None else v == "on"


async def _admin(args: argparse.Namespace) -> int:
    station = args.station.lower()
    try:
        async with admin_context(args.nats_url, timeout=args.timeout, **_auth(args)) as ctx:
            if args.area == "dls":
                if await ctx.station(station) is None:
                    return _fail(f"station {args.station} does not exist")
                if args.action == "list":
                    for row in await list_dls(ctx, station):
                        print(json.dumps(row))
                    return 0
                ids = set(args.id) if args.id else None
                if args.action == "drop":
                    print(f"dropped {await drop(ctx, station, ids)} row(s)")
                    return 0
                print(f"resent {await resend(ctx, station, ids)} message(s)")
                return 0
            if args.action == "set-dls":
                ok = await set_dls_configuration(
                    ctx, station, poison=_flag(args.poison), schemaverse=_flag(args.schemaverse)
                )
            else:
                ok = await remove_station(ctx, station)
            if not ok:
                return _fail(f"station {args.station} does not exist")
            return 0
    except AdminError as err:
        return _fail(str(err))
    except (nats.errors.Error, TimeoutError, OSError) as err:
        # Lost the server or JetStream mid-command.
        return _fail(f"{args.area} {args.action} failed: {err or type(err).__name__}")


def _setup_logging(verbose: bool) -> None:
    """WARNING for everything; with ``-v`` DEBUG for the ``memphis_broker`` hierarchy only
    (nats-py's and asyncio's debug output would drown it)."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("memphis_broker").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("dls", "station"):
        args = _admin_parser().parse_args(argv)
        _setup_logging(False)
        return asyncio.run(_admin(args))
    if argv and argv[0] == "run":
        argv = argv[1:]
    parser = _run_parser()
    args = parser.parse_args(argv)
    if args.cluster is not None and args.nats_url:
        parser.error("--cluster starts servers, --nats-url attaches to one: give only one")
    _setup_logging(args.verbose)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
