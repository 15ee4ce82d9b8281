"""Connection flags: the parameters of ``memphis_sync.connect()``, each also read from MEMPHIS_*.

The defaults are read from the table ``connect()`` applies (``CONNECT_DEFAULTS``, beside the
options' one declaration), so the CLI cannot drift from the library; ``host`` and ``username``
have none there and get the quickstart's ``localhost`` and
``root``. Precedence: a flag on the command line, then the environment variable, then the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import memphis_sync
from memphis_core.memphis._options import CONNECT_DEFAULTS

from ._errors import USAGE, CliError

__all__ = [
    "FLAGS",
    "add_connection_flags",
    "connection_settings",
    "describe",
    "open_connection",
]


def _connect_default(name: str) -> Any:
    # The one table of connect's defaults (its options are declared once, in the core).
    return CONNECT_DEFAULTS[name]  # type: ignore[literal-required]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


@dataclass(frozen=True)
class Flag:
    """One connection flag: ``--<name>``, env ``MEMPHIS_<NAME>``, ``connect(<param>=...)``."""

    param: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    secret: bool = False

    @property
    def option(self) -> str:
        return "--" + self.param.replace("_", "-")

    @property
    def env(self) -> str:
        return "MEMPHIS_" + self.param.upper()


FLAGS: Final = (
    Flag("host", str, "localhost", "broker host, or several as h1:p1,h2:p2"),
    Flag("username", str, "root", "user name"),
    Flag("connection_token", str, None, "connection token (token auth)", "TOKEN", secret=True),
    Flag("password", str, None, "password (user/password auth)", secret=True),
    Flag("account_id", int, _connect_default("account_id"), "account (tenant) id", "N"),
    Flag("port", int, _connect_default("port"), "broker port", "N"),
    Flag("timeout", float, _connect_default("timeout"), "connect/request timeout, seconds", "S"),
    Flag("reconnect", _bool, _connect_default("reconnect"), "reconnect after a lost connection"),
    Flag("max_reconnect", int, _connect_default("max_reconnect"), "attempts per outage", "N"),
    Flag(
        "reconnect_interval",
        float,
        _connect_default("reconnect_interval"),
        "seconds between reconnect attempts",
        "S",
    ),
    Flag("tls_cert", str, None, "client certificate file (mutual TLS)", "FILE"),
    Flag("tls_key", str, None, "client key file (mutual TLS)", "FILE"),
    Flag("tls_ca", str, None, "CA file (mutual TLS)", "FILE"),
)


def _help(flag: Flag) -> str:
    shown = "unset" if flag.default is None else flag.default
    if flag.secret and flag.default is not None:
        shown = "***"
    return f"{flag.help} (env {flag.env}; default: {shown})"


def add_connection_flags(
    parser: argparse.ArgumentParser, *, top_level: bool, skip: frozenset[str] = frozenset()
) -> None:
    """Add the connection flags to ``parser``.

    The top-level parser holds the real defaults; a subcommand's copy uses ``SUPPRESS`` so that
    ``memphis --host h produce ...`` is not overwritten by the subcommand's default, while
    ``memphis produce ... --host h`` works as well. ``skip`` leaves out flags whose name the
    subcommand uses for something else (``consume --timeout``).
    """
    group = parser.add_argument_group("connection (flags win over MEMPHIS_* variables)")
    for flag in FLAGS:
        if flag.param in skip:
            continue
        default = None if top_level else argparse.SUPPRESS
        if flag.convert is _bool:
            group.add_argument(
                flag.option,
                dest=flag.param,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=_help(flag),
            )
        else:
            group.add_argument(
                flag.option,
                dest=flag.param,
                type=flag.convert,
                default=default,
                metavar=flag.metavar,
                help=_help(flag),
            )


def connection_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The value of every flag: command line, else environment, else default.

    Raises:
        CliError: an environment variable does not parse (names the variable).
    """
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for flag in FLAGS:
        value = getattr(args, flag.param, None)
        if value is None and env.get(flag.env, "") != "":
            try:
                value = flag.convert(env[flag.env])
            except ValueError:
                raise CliError(
                    f"{flag.env}={env[flag.env]!r} is not a valid {flag.param}", USAGE
                ) from None
        settings[flag.param] = flag.default if value is None else value
    return settings


def _tls(settings: Mapping[str, Any]) -> memphis_sync.TLS | None:
    files = (settings["tls_cert"], settings["tls_key"], settings["tls_ca"])
    if not any(files):
        return None
    # All three or none: connect() rejects a partial TLS with its own text, so pass them on.
    return memphis_sync.TLS(files[0] or "", files[1] or "", files[2] or "")


def describe(settings: Mapping[str, Any]) -> str:
    """``host:port as user``, for error messages."""
    host = str(settings["host"])
    where = host if ":" in host else f"{host}:{settings['port']}"
    return f"{where} as {settings['username']}"


def open_connection(settings: Mapping[str, Any]) -> memphis_sync.Connection:
    """``memphis_sync.connect()`` with the resolved connection settings.

    Raises:
        LocalProtocolError: bad settings (neither or both of token and password, ...).
        CliError: unreachable broker or refused credentials (the library's
            MemphisConnectError, with the address and user added).
    """
    try:
        return _connect(settings)
    except memphis_sync.MemphisConnectError as exc:
        # The library's text ("Authorization Violation") does not say where or as whom.
        raise CliError(f"cannot connect to {describe(settings)}: {exc}") from exc


def _connect(settings: Mapping[str, Any]) -> memphis_sync.Connection:
    return memphis_sync.connect(
        settings["host"],
        settings["username"],
        connection_token=settings["connection_token"],
        password=settings["password"],
        account_id=settings["account_id"],
        port=settings["port"],
        reconnect=settings["reconnect"],
        max_reconnect=settings["max_reconnect"],
        reconnect_interval=settings["reconnect_interval"],
        timeout=settings["timeout"],
        tls=_tls(settings),
    )
