"""The ``memphis`` argument parser and ``main(argv)``."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import memphis_sync
from memphis_core.memphis._options import STATION_DEFAULTS

from . import _bench, _commands
from ._connection import add_connection_flags, connection_settings
from ._errors import USAGE, CliError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, dict[str, Any]], int]


_EPILOG: Final = (
    "Connection flags (--host, --username, --connection-token, --password, ...) are accepted "
    "before or after the subcommand; each is also read from MEMPHIS_<FLAG> "
    "(MEMPHIS_HOST, MEMPHIS_CONNECTION_TOKEN, ...). Run 'memphis SUBCOMMAND --help' for details."
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``memphis produce: <what was wrong> (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _leaf(
    parent: Any, name: str, handler: Handler, help_text: str, *, skip: frozenset[str] = frozenset()
) -> argparse.ArgumentParser:
    # The handler's docstring is the subcommand's description, without reST quoting.
    doc = (inspect.getdoc(handler) or help_text).replace("``", "'")
    p: argparse.ArgumentParser = parent.add_parser(
        name, help=help_text, description=doc, formatter_class=_formatter
    )
    p.set_defaults(handler=handler)
    add_connection_flags(p, top_level=False, skip=skip)
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return p


def _station_default(name: str) -> Any:
    # The one table of create_station's defaults, beside the options' declaration.
    return STATION_DEFAULTS[name]  # type: ignore[literal-required]


def _add_station(sub: Any) -> None:
    group = sub.add_parser("station", help="create, list, inspect or destroy stations")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _leaf(actions, "create", _commands.station_create, "create a station")
    create.add_argument("name", metavar="NAME")
    retention = [t.value for t in memphis_sync.RetentionType]
    storage = [t.value for t in memphis_sync.StorageType]
    # (flag, create_station() parameter whose default it shows, help, argparse options)
    options: list[tuple[str, str, str, dict[str, Any]]] = [
        ("--partitions", "partitions_number", "partitions", {"type": int, "metavar": "N"}),
        ("--retention-type", "retention_type", "what --retention-value counts",
         {"choices": retention}),
        ("--retention-value", "retention_value",
         "seconds, messages or bytes kept, per --retention-type", {"type": int, "metavar": "N"}),
        ("--storage-type", "storage_type", "where messages are stored", {"choices": storage}),
        ("--replicas", "replicas", "stream replicas", {"type": int, "metavar": "N"}),
        ("--idempotency-window", "idempotency_window", "seconds a --msg-id is remembered",
         {"type": float, "metavar": "S"}),
        ("--schema", "schema_name", "schema to enforce", {"metavar": "NAME"}),
        ("--dls-station", "dls_station", "station that receives dead letters",
         {"metavar": "NAME"}),
    ]  # fmt: skip
    for flag, param, text, spec in options:
        default = _station_default(param)
        if hasattr(default, "value"):  # a str enum: show and pass its wire value
            default = default.value
        shown = "none" if default == "" else default
        create.add_argument(flag, default=default, help=f"{text} (default: {shown})", **spec)
    lister = _leaf(actions, "list", _commands.station_list, "list stations (via JetStream)")
    lister.add_argument("--json", action="store_true", help="one JSON object per line")
    info = _leaf(actions, "info", _commands.station_info, "show one station (via JetStream)")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="one JSON object")
    destroy = _leaf(actions, "destroy", _commands.station_destroy, "destroy a station")
    destroy.add_argument("name", metavar="NAME")


def _add_produce(sub: Any) -> None:
    p = _leaf(sub, "produce", _commands.produce, "produce messages (arguments or stdin lines)")
    p.add_argument("station", metavar="STATION")
    p.add_argument("messages", nargs="*", metavar="MESSAGE", help="default: one per stdin line")
    p.add_argument(
        "--producer",
        default=_commands.DEFAULT_PRODUCER,
        metavar="NAME",
        help="producer name (default: %(default)s)",
    )
    p.add_argument("--headers", nargs="+", action="extend", metavar="K=V", help="message headers")
    p.add_argument(
        "--msg-id", metavar="ID", help="idempotency id (same id within the window: stored once)"
    )
    p.add_argument(
        "--partition-key", metavar="KEY", help="route by key (MurmurHash3, as every Memphis SDK)"
    )
    p.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="send each message N times (default: %(default)s)",
    )


def _add_consume(sub: Any) -> None:
    # consume's --timeout is its idle limit; the connect timeout is then `memphis --timeout S
    # consume ...` or MEMPHIS_TIMEOUT.
    p = _leaf(sub, "consume", _commands.consume, "print messages", skip=frozenset({"timeout"}))
    p.add_argument("station", metavar="STATION")
    p.add_argument("--consumer", required=True, metavar="NAME", help="consumer name")
    p.add_argument("--group", metavar="G", help="consumer group (default: the consumer name)")
    p.add_argument(
        "--count", type=int, metavar="N", help="stop after N messages (default: no limit)"
    )
    p.add_argument(
        "--ack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="acknowledge what was printed (default: --ack)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per message and line")
    p.add_argument(
        "--timeout",
        dest="idle_timeout",  # not "timeout": that is the top-level connect timeout's dest
        type=float,
        metavar="S",
        help="stop after S seconds without a message (default: wait forever; the connect "
        "timeout is then 'memphis --timeout S consume ...' or MEMPHIS_TIMEOUT)",
    )


def _add_schema(sub: Any) -> None:
    group = sub.add_parser("schema", help="create, list, attach or detach schemas")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _leaf(actions, "create", _commands.schema_create, "create a schema from a file")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--type", required=True, choices=[t.value for t in memphis_sync.SchemaType])
    create.add_argument("file", metavar="FILE")
    attach = _leaf(actions, "attach", _commands.schema_attach, "enforce a schema on a station")
    attach.add_argument("name", metavar="NAME")
    attach.add_argument("--station", required=True)
    detach = _leaf(actions, "detach", _commands.schema_detach, "detach a station's schema")
    detach.add_argument("--station", required=True)
    lister = _leaf(actions, "list", _commands.schema_list, "list schemas (memphis_broker)")
    lister.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_dls(sub: Any) -> None:
    group = sub.add_parser("dls", help="dead letters (needs memphis_broker)")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    lister = _leaf(actions, "list", _commands.dls_list, "list a station's dead letters")
    lister.add_argument("station", metavar="STATION")
    lister.add_argument("--json", action="store_true", help="one JSON object per line")
    resend = _leaf(actions, "resend", _commands.dls_resend, "resend poison messages")
    resend.add_argument("station", metavar="STATION")
    resend.add_argument("--id", type=int, action="append", help="only this DLS id (repeatable)")


def _add_bench(sub: Any) -> None:
    group = sub.add_parser("bench", help="measure produce or consume throughput")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, batch, batch_help in (
        (
            "produce",
            _bench.bench_produce,
            0,
            "1 = synchronous produce with p50/p99 latency; N = async, flush every N; "
            "0 = async, one flush at the end",
        ),
        ("consume", _bench.bench_consume, 100, "fetch batch size"),
    ):
        p = _leaf(actions, name, handler, f"bench {name}")
        p.add_argument("--station", default="memphis-cli-bench", help="(default: %(default)s)")
        p.add_argument("--producer", default="memphis-cli-bench", help="(default: %(default)s)")
        p.add_argument("--count", type=int, default=10_000, help="messages (default: %(default)s)")
        p.add_argument("--size", type=int, default=128, help="bytes each (default: %(default)s)")
        p.add_argument("--batch", type=int, default=batch, help=f"{batch_help} (default: {batch})")
        p.add_argument("--json", action="store_true", help="results as one JSON object")


def build_parser() -> argparse.ArgumentParser:
    """The ``memphis`` parser; connection defaults come from ``memphis_sync.connect()``."""
    parser = _Parser(
        prog="memphis",
        description="Work with a Memphis broker from the shell (memphis-sansio "
        f"{memphis_sync.__version__}).",
        epilog=textwrap.fill(_EPILOG, 78),
        formatter_class=_formatter,
    )
    add_connection_flags(parser, top_level=True)
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    parser.add_argument(
        "--version", action="version", version=f"memphis {memphis_sync.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_station(sub)
    _add_produce(sub)
    _add_consume(sub)
    _add_schema(sub)
    _add_dls(sub)
    _add_bench(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``memphis`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    0 on success; 1 when the broker or the system said no (``MemphisError``, ``OSError``); 2 for
    a bad command line or environment; 130 on Ctrl-C. Errors are printed as one line on
    stderr, with the traceback only under ``--debug``. Never raises (``SystemExit`` from
    ``--help`` is turned into its code).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE)
    debug = bool(getattr(args, "debug", False))
    try:
        settings = connection_settings(args)
        handler: Handler = args.handler
        return handler(args, settings)
    except KeyboardInterrupt:
        print("memphis: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`memphis consume ... | head`): not an error worth a message.
        # Point stdout at devnull so the interpreter's final flush does not complain again.
        with contextlib.suppress(OSError, ValueError):  # ValueError: stdout has no fd
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (CliError, memphis_sync.MemphisError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"memphis: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CliError) else 1
