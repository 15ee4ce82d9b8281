"""How long an outage the default reconnect budget survives, with 1 and with 3 servers.

Starts an embedded broker, connects (memphis_sync, default ``max_reconnect=10`` and
``reconnect_interval=1.0``) to it alone and then to it plus two addresses where nothing
listens, kills the broker's nats-server, and prints the seconds until the connection gives up
(its ``on_closed`` callback). See docs/cluster-client.md, "The budget in seconds".

Run: ``.venv/bin/python scripts/reconnect_budget.py``
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from memphis_broker._server import free_port


def main() -> int:
    for dead in (0, 2):
        with (
            tempfile.TemporaryDirectory() as tmp,
            EmbeddedBroker(store_dir=Path(tmp) / "store") as broker,
        ):
            servers = [f"{broker.host}:{broker.port}"]
            servers += [f"127.0.0.1:{free_port()}" for _ in range(dead)]
            closed = threading.Event()
            conn = memphis.connect(
                servers,
                "root",
                connection_token=broker.token,
                on_closed=lambda error, done=closed: done.set(),
            )
            broker.kill_server()
            started = time.monotonic()
            closed.wait(120)
            print(f"{len(servers)} server(s): gave up after {time.monotonic() - started:.1f} s")
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
