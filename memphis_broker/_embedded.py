"""``EmbeddedBroker``: nats-server plus a control plane, for tests, examples and the launcher.

nats-server runs as a child process; the control plane runs on its own asyncio loop in a
background thread, so blocking code (the sync client, pytest) can use the broker directly.
The server can be stopped, killed (SIGKILL) and started again on the same port and store while
the control plane keeps running: nats-py reconnects it, as it would in production.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from memphis_broker._control import ControlPlane
from memphis_broker._control_thread import ControlPlaneThread
from memphis_broker._server import (
    CONTROL_USER,
    NatsServer,
    ServerConfig,
    ServerStartError,
    free_port,
    sync_setting,
)

__all__ = ["PORT_ATTEMPTS", "EmbeddedBroker"]

#: Starts tried when a port the broker picked itself was taken meanwhile.
PORT_ATTEMPTS: Final = 5


class EmbeddedBroker:
    """A Memphis-compatible broker in this process (control plane) and a child (nats-server).

    Args:
        port: client port; 0 picks a free one (kept across server restarts).
        store_dir: JetStream store and generated config; None uses a temporary directory that
            is removed by :meth:`stop`.
        host: listen address (loopback by default).
        token: connection token in token mode (the default mode, token ``memphis``).
        users: application users ``{name: password}``; giving it (even empty) selects
            user/password mode, where root is ``root$1``/``root`` with ``root_password``.
        root_password: root's password in user/password mode.
        monitor_port: monitoring port; 0 picks a free one.
        control_plane: False starts only nats-server.
        dls_retention_hours: DLS row expiry (docs/protocol.md §9.4).
        sync_interval: JetStream fsync policy: None (default) keeps nats-server's (fsync at
            least every 2 minutes, acknowledging before the flush); ``"always"`` fsyncs every
            write before acknowledging it; a number of seconds or a duration string
            (``"100ms"``) sets the interval. See docs/broker.md, "Durability".

    Raises:
        ValueError: a bad ``sync_interval`` (at construction).
        StoreInUseError: from :meth:`start`, when another broker holds ``store_dir``.
        ServerStartError: from :meth:`start`, when nats-server does not become ready.

    Attributes: ``host``, ``port``, ``monitor_port``, ``store_dir``, ``token``, ``users``,
    ``root_password``, ``url`` (``nats://host:port``), ``monitor_url``, ``password_mode``,
    ``server`` (the :class:`NatsServer`).
    """

    def __init__(
        self,
        port: int = 0,
        store_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        token: str | None = "memphis",
        users: Mapping[str, str] | None = None,
        root_password: str = "memphis",
        monitor_port: int = 0,
        control_plane: bool = True,
        dls_retention_hours: float = 3.0,
        sync_interval: float | str | None = None,
    ) -> None:
        sync = sync_setting(sync_interval)
        self._own_store = store_dir is None
        self.store_dir = Path(store_dir) if store_dir else Path(tempfile.mkdtemp(prefix="memphis-"))
        self.host = host
        # Ports picked here were free a moment ago, not reserved: ``start`` picks again if one
        # was taken in between (a client's ephemeral port can land on it).
        self._auto_ports = (not port, not monitor_port)
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self.token = None if users is not None else token
        self.users = dict(users) if users is not None else None
        self.root_password = root_password
        self._config = ServerConfig(
            store_dir=self.store_dir,
            host=host,
            port=self.port,
            monitor_port=self.monitor_port,
            token=self.token,
            users=self.users,
            root_password=root_password,
            sync_interval=sync,
        )
        self.server = NatsServer(self._config)
        self._want_cp = control_plane
        self._retention = dls_retention_hours
        self._control = ControlPlaneThread(self._new_control_plane, "memphis-control-plane")

    # -- addresses and credentials ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def password_mode(self) -> bool:
        return self.users is not None

    def connect_options(self, username: str = "root") -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` as a Memphis user would authenticate."""
        if self.users is None:
            return (
                {"servers": [self.url], "token": self.token}
                if self.token
                else {"servers": [self.url]}
            )
        pw = self.root_password if username == "root" else self.users[username]
        return {"servers": [self.url], "user": f"{username}$1", "password": pw}

    def control_plane_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`ControlPlane` (for a second instance in tests)."""
        opts: dict[str, Any] = {
            "monitor_url": self.monitor_url,
            "dls_retention_hours": self._retention,
        }
        if self.users is None:
            opts["token"] = self.token
        else:
            opts.update(
                user=CONTROL_USER,
                password=self._config.control_password,
                users=self._config.all_users().keys(),
            )
        return opts

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        """Start nats-server and (unless disabled) the control plane; returns self.

        A port this broker picked itself that turns out taken is picked again (up to
        ``PORT_ATTEMPTS`` starts); a port the caller gave is never changed.
        """
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self.server.start(timeout)
                break
            except ServerStartError as err:
                if not (err.port_conflict and any(self._auto_ports)) or attempt == PORT_ATTEMPTS:
                    raise
                self._pick_ports()
        if self._want_cp:
            try:
                self.start_control_plane(timeout)
            except BaseException:
                self.server.stop()
                raise
        return self

    def _pick_ports(self) -> None:
        auto_port, auto_monitor = self._auto_ports
        if auto_port:
            self.port = free_port(self.host)
        if auto_monitor:
            self.monitor_port = free_port(self.host)
        self._config = dataclasses.replace(
            self._config, port=self.port, monitor_port=self.monitor_port
        )
        self.server = NatsServer(self._config)

    def stop(self) -> None:
        """Stop the control plane, then nats-server; remove a temporary store."""
        self.stop_control_plane()
        self.server.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def start_server(self, timeout: float = 10.0) -> None:
        """(Re)start nats-server on the same port and store."""
        self.server.start(timeout)

    def stop_server(self) -> None:
        """Graceful nats-server shutdown (SIGTERM); the control plane keeps reconnecting."""
        self.server.stop()

    def kill_server(self) -> None:
        """SIGKILL nats-server, as a crash would."""
        self.server.kill()

    def restart_server(self, kill: bool = False, timeout: float = 10.0) -> None:
        self.kill_server() if kill else self.stop_server()
        self.start_server(timeout)

    @property
    def control_plane_running(self) -> bool:
        return self._control.running

    def start_control_plane(self, timeout: float = 10.0) -> None:
        """Start the control plane in a background thread and wait until it serves."""
        self._control.start(timeout)

    def stop_control_plane(self, timeout: float = 10.0) -> None:
        self._control.stop(timeout)

    def _new_control_plane(self) -> ControlPlane:
        return ControlPlane([self.url], **self.control_plane_options())
