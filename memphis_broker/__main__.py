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
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import nats.errors

from memphis_broker._admin import (
    AdminError,
    admin_context,
    remove_station,
    set_dls_configuration,
)
from memphis_broker._cluster import MAX_SIZE
from memphis_broker._dls import drop, list_dls, resend
from memphis_broker._launcher import PROG, fail, serve
from memphis_broker._server import sync_setting
from memphis_broker.console import add_arguments as add_console_arguments

__all__ = ["main"]

# docs/protocol.md §10.4: the real broker's username rule.
_USERNAME: Final = re.compile(r"[a-z0-9_.-]{1,60}")


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
        prog=PROG,
        description="Memphis-compatible broker: nats-server with JetStream plus the control plane",
        # The admin subcommands have a parser of their own (see main), so list them here.
        # argparse fills in %(prog)s itself: no module constant to keep in step.
        epilog="subcommands: 'run' (the default: start the broker with the options above); "
        "'dls list', 'dls resend', 'station set-dls' and 'station remove' operate on a "
        "running broker (see '%(prog)s dls list --help' and so on).",
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


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="operate on a running broker", formatter_class=_Formatter
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
                    return fail(f"station {args.station} does not exist")
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
                return fail(f"station {args.station} does not exist")
            return 0
    except AdminError as err:
        return fail(str(err))
    except (nats.errors.Error, TimeoutError, OSError) as err:
        # Lost the server or JetStream mid-command.
        return fail(f"{args.area} {args.action} failed: {err or type(err).__name__}")


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
    password_mode = args.password_auth or bool(args.user) or bool(args.users_file)
    users = _load_users(args) if password_mode else None
    try:
        return asyncio.run(serve(args, users))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
