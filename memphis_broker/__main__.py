"""``memphis-broker`` / ``python -m memphis_broker``: run the broker, or operate on one.

memphis-broker [run] [--port 6666] [--store-dir ./.memphis] [--token memphis | --password-auth]
memphis-broker dls list --station S          # poison / schema-failure rows
memphis-broker dls resend --station S [--id N ...]
memphis-broker station set-dls --station S [--poison on|off] [--schemaverse on|off]
memphis-broker station remove --station S    # with a remove_station push to the SDKs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any, Final

from memphis_broker._admin import admin_context, remove_station, set_dls_configuration
from memphis_broker._control import ControlPlane
from memphis_broker._dls import list_dls, resend
from memphis_broker._server import CONTROL_USER, NatsServer, ServerConfig

__all__ = ["main"]

# §8.3: the real broker's username rule.
_USERNAME: Final = re.compile(r"[a-z0-9_.-]{1,60}")


def _user_arg(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not _USERNAME.fullmatch(name) or not password:
        raise argparse.ArgumentTypeError(f"expected name:password with name [a-z0-9_.-]: {text!r}")
    return name, password


def _load_users(args: argparse.Namespace) -> dict[str, str]:
    users: dict[str, str] = dict(args.user or [])
    if args.users_file:
        doc = json.loads(Path(args.users_file).read_text(encoding="utf-8"))
        entries = doc.get("users", doc) if isinstance(doc, dict) else {}
        for name, pw in entries.items():
            users[_user_arg(f"{name}:{pw}")[0]] = str(pw)
    return users


def _conn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", default="nats://127.0.0.1:6666", help="NATS server to use")
    p.add_argument("--token", default=None, help="connection token (token mode)")
    p.add_argument("--nats-user", default=None, help="NATS user (password mode)")
    p.add_argument("--nats-password", default=None)


def _auth(args: argparse.Namespace) -> dict[str, Any]:
    if args.nats_user:
        return {"user": args.nats_user, "password": args.nats_password}
    return {"token": args.token or "memphis"}


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memphis-broker", description="Memphis-compatible broker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6666)
    p.add_argument("--monitor-port", type=int, default=8222)
    p.add_argument("--store-dir", default="./.memphis")
    p.add_argument("--token", default="memphis", help="connection token (token mode, default)")
    p.add_argument(
        "--password-auth",
        action="store_true",
        help="user/password mode: root$1 plus the application users",
    )
    p.add_argument("--root-password", default="memphis")
    p.add_argument(
        "--user",
        action="append",
        type=_user_arg,
        metavar="NAME:PASSWORD",
        help="application user (password mode; repeatable)",
    )
    p.add_argument("--users-file", help='JSON {"users": {"name": "password"}}')
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
    p.add_argument("--nats-password", default=None)
    p.add_argument("--dls-retention-hours", type=float, default=3.0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def _serve(args: argparse.Namespace) -> int:
    password_mode = args.password_auth or bool(args.user) or bool(args.users_file)
    users = _load_users(args) if password_mode else None
    # Handlers first: a SIGTERM during start-up must still stop the nats-server child (it runs
    # in its own session so that a terminal Ctrl-C reaches only us, and we stop it in order).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server: NatsServer | None = None
    if args.nats_url:
        url, monitor = args.nats_url, args.monitor_url
        auth: dict[str, Any] = (
            {"user": args.nats_user, "password": args.nats_password}
            if args.nats_user
            else {"token": args.token}
        )
        known = None if users is None else ["root", *users]
        where = f"attached to {url}"
    else:
        config = ServerConfig(
            store_dir=Path(args.store_dir).resolve(),
            host=args.host,
            port=args.port,
            monitor_port=args.monitor_port,
            token=None if password_mode else args.token,
            users=users,
            root_password=args.root_password,
        )
        server = NatsServer(config)
        await asyncio.to_thread(server.start)  # keeps the loop free to record signals
        url = f"nats://{args.host}:{args.port}"
        monitor = f"http://{args.host}:{args.monitor_port}"
        auth = (
            {"user": CONTROL_USER, "password": config.control_password}
            if password_mode
            else {"token": args.token}
        )
        known = list(config.all_users()) if password_mode else None
        where = f"{url} (store {config.store_dir}, monitoring {monitor})"
    cp = ControlPlane(
        url, users=known, monitor_url=monitor, dls_retention_hours=args.dls_retention_hours, **auth
    )
    try:
        if not stop.is_set():
            await cp.start()
            mode = "user/password" if password_mode else "token"
            print(f"memphis-broker ready: {where}, {mode} auth", flush=True)
        await stop.wait()
    finally:
        await cp.stop()
        if server is not None:
            server.stop()
    return 0


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memphis-broker", description="operate on a running broker")
    sub = p.add_subparsers(dest="area", required=True)
    dls = sub.add_parser("dls").add_subparsers(dest="action", required=True)
    for name in ("list", "resend"):
        a = dls.add_parser(name)
        a.add_argument("--station", required=True)
        _conn_args(a)
        if name == "resend":
            a.add_argument("--id", type=int, action="append", help="only these DLS ids")
    station = sub.add_parser("station").add_subparsers(dest="action", required=True)
    s = station.add_parser("set-dls")
    s.add_argument("--station", required=True)
    s.add_argument("--poison", choices=("on", "off"))
    s.add_argument("--schemaverse", choices=("on", "off"))
    _conn_args(s)
    r = station.add_parser("remove")
    r.add_argument("--station", required=True)
    _conn_args(r)
    return p


def _flag(v: str | None) -> bool | None:
    return None if v is None else v == "on"


async def _admin(args: argparse.Namespace) -> int:
    async with admin_context(args.nats_url, **_auth(args)) as ctx:
        if args.area == "dls" and args.action == "list":
            for row in await list_dls(ctx, args.station):
                print(json.dumps(row))
            return 0
        if args.area == "dls":
            n = await resend(ctx, args.station, set(args.id) if args.id else None)
            print(f"resent {n} message(s)")
            return 0
        if args.action == "set-dls":
            ok = await set_dls_configuration(
                ctx, args.station, poison=_flag(args.poison), schemaverse=_flag(args.schemaverse)
            )
        else:
            ok = await remove_station(ctx, args.station)
        if not ok:
            print(f"station {args.station} does not exist", file=sys.stderr)
            return 1
        return 0


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("dls", "station"):
        return asyncio.run(_admin(_admin_parser().parse_args(argv)))
    if argv and argv[0] == "run":
        argv = argv[1:]
    args = _run_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
