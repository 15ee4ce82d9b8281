"""The broker's web console and Prometheus metrics (docs/console.md).

This module is what the launcher calls; it imports nothing of the web stack at import time, so
``memphis-broker`` starts without the ``console`` extra installed and says why the console is
off. The app itself is in ``_app`` (Starlette + Jinja2, served by uvicorn in the control plane's
event loop), the figures in ``_state`` and the Prometheus series in ``_metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from memphis_broker._control import ControlPlane
    from memphis_broker._embedded import EmbeddedBroker

__all__ = ["DEFAULT_PORT", "ConsoleHandle", "add_arguments", "start_console", "start_embedded"]

#: The console's default port (the port of the original Memphis UI).
DEFAULT_PORT: Final = 9000


class ConsoleHandle(Protocol):
    """A running console: its URL, and how to stop it."""

    @property
    def url(self) -> str:
        """The console's address, e.g. ``http://127.0.0.1:9000/`` (ends with ``/``)."""
        ...

    async def stop(self) -> None:
        """Stop serving and sampling, waiting a few seconds at most."""
        ...


def _console_port(text: str) -> int | None:
    word = text.strip().lower()
    if word == "off":
        return None
    if not word.isdigit() or int(word) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0 to 65535, or 'off': {text!r}")
    return int(word)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--console-port`` to the launcher's parser."""
    parser.add_argument(
        "--console-port",
        type=_console_port,
        default=DEFAULT_PORT,
        metavar="PORT|off",
        help="web console and /metrics on --host (0: a free port; off: no console); "
        "needs the 'console' extra (docs/console.md)",
    )


async def start_console(
    port: int | None,
    host: str,
    planes: Sequence[ControlPlane],
    servers: Sequence[str],
    monitor_urls: Sequence[str],
) -> tuple[ConsoleHandle | None, str]:
    """Start the console in the running loop.

    Never fails the broker: a missing extra or a port in use leaves the console off.

    Args:
        port: ``--console-port`` (None: off).
        host: ``--host``.
        planes: the running control planes; the first one's connection and buckets are read,
            and every plane's requests are counted in ``/metrics``.
        servers: NATS URLs, to check logins against.
        monitor_urls: every node's monitoring endpoint (may be empty).

    Returns:
        The running console (None if off) and the text the launcher adds to its ready line
        (docs/broker.md, "Start-up and failures": one ready line), ``, console <url>`` or
        ``, console off (<why>)``.
    """
    if port is None:
        return None, ", console off (--console-port off)"
    try:
        from memphis_broker.console._app import Console, bind  # noqa: PLC0415 - optional extra
    except ImportError as err:
        missing = (err.name or "").partition(".")[0] or str(err)  # the package, not its module
        why = f"{missing} is not installed: pip install 'memphis-sansio[console]'"
        return None, f", console off ({why})"
    try:
        sock = bind(host, port)
    except OSError as err:
        return None, f", console off (cannot listen on {host}:{port}: {err.strerror or err})"
    plane = planes[0]
    console = Console(
        lambda: plane.ctx,
        servers=servers,
        monitor_urls=monitor_urls,
        password_mode=plane.ctx.users is not None,
        sock=sock,
    )
    for cp in planes:
        cp.request_observers.append(console.metrics.observe)
    await console.start()
    return console, f", console {console.url}"


def start_embedded(
    broker: EmbeddedBroker, port: int | None = DEFAULT_PORT, *, timeout: float = 30.0
) -> tuple[Callable[[], None], str]:
    """Start the console in an :class:`EmbeddedBroker`'s control-plane loop (``make demo``).

    Call from any thread but the broker's, after ``broker.start()``. Returns a function that
    stops the console (call it before ``broker.stop()``) and the ready-line text of
    :func:`start_console`.
    """
    loop, plane = broker._control.loop, broker._control.plane  # the broker's own thread and plane
    if loop is None or plane is None:
        return (lambda: None), ", console off (the broker runs no control plane)"
    started = asyncio.run_coroutine_threadsafe(
        start_console(port, broker.host, [plane], [broker.url], [broker.monitor_url]), loop
    )
    handle, note = started.result(timeout)

    def stop() -> None:
        if handle is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(handle.stop(), loop).result(timeout)

    return stop, note
