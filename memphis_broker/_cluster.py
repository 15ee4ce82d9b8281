"""``LocalCluster``: a JetStream cluster of stock nats-servers on one machine (docs/cluster.md).

Each node is a :class:`NatsServer` with its own store (``<store_dir>/node-<i>``), its own client,
monitoring and route ports, and a ``cluster {}`` block routing to every other node; all nodes
share one auth configuration. It is what ``memphis-broker --cluster N`` runs, and what tests use
to kill and restart nodes under a client.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from memphis_broker._control import ControlPlane
from memphis_broker._control_thread import ControlPlaneGroup, ControlPlaneThread
from memphis_broker._server import (
    CONTROL_USER,
    ClusterConfig,
    NatsServer,
    ServerConfig,
    ServerStartError,
    StoreLock,
    free_ports,
    sync_setting,
)

__all__ = ["LocalCluster"]

_POLL_S: Final = 0.05
MAX_SIZE: Final = 9


def _ports(base: int, size: int, free: list[int]) -> list[int]:
    """``base``, ``base+1``, ... or, for base 0, the next ``size`` of the ``free`` ports."""
    if base:
        return [base + i for i in range(size)]
    taken, free[:] = free[:size], free[size:]
    return taken


class LocalCluster:
    """``size`` nats-servers forming one JetStream cluster on ``host``.

    Args:
        size: number of nodes, 1 to 9 (3 tolerates the loss of one node).
        store_dir: parent of the node stores ``node-0`` ... (and locked for the cluster's life);
            None uses a temporary directory removed by :meth:`stop`.
        host: listen address of every port (loopback by default).
        port: client port of node 0, node ``i`` gets ``port + i``; 0 picks free ports.
        monitor_port: the same for the monitoring ports.
        cluster_port: the same for the route ports.
        token: connection token (token mode, the default, token ``memphis``).
        users: ``{name: password}`` selects user/password mode, as :class:`EmbeddedBroker`.
        root_password: root's password in user/password mode.
        sync_interval: JetStream fsync policy, as :class:`EmbeddedBroker`.
        cluster_name: the NATS cluster name.
        control_plane: True also runs one :class:`ControlPlane` per node (each on its own
            node, no connection tracking), on an asyncio loop in a background thread, so that
            blocking code and Memphis SDK tests can use the cluster as a broker.

    Raises:
        ValueError: a bad ``size`` or ``sync_interval``.

    Attributes: ``size``, ``host``, ``store_dir``, ``nodes`` (one :class:`NatsServer` each, in
    index order; node ``i`` is named ``memphis-<i>``), ``token``, ``users``, ``control_password``.
    """

    def __init__(
        self,
        size: int = 3,
        store_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        monitor_port: int = 0,
        cluster_port: int = 0,
        token: str | None = "memphis",
        users: Mapping[str, str] | None = None,
        root_password: str = "memphis",
        sync_interval: float | str | None = None,
        cluster_name: str = "memphis",
        control_plane: bool = False,
    ) -> None:
        if not 1 <= size <= MAX_SIZE:
            raise ValueError(f"cluster size must be 1 to {MAX_SIZE}: {size}")
        sync = sync_setting(sync_interval)
        self.size = size
        self.host = host
        self._own_store = store_dir is None
        self.store_dir = (
            Path(store_dir) if store_dir else Path(tempfile.mkdtemp(prefix="memphis-cluster-"))
        )
        self.token = None if users is not None else token
        self.users = dict(users) if users is not None else None
        self.root_password = root_password
        self.lock = StoreLock(self.store_dir)
        self._want_cp = control_plane
        self._control = ControlPlaneThread(
            self._new_control_planes, "memphis-cluster-control-planes"
        )
        free = free_ports(size * [port, monitor_port, cluster_port].count(0), host)
        clients = _ports(port, size, free)
        monitors = _ports(monitor_port, size, free)
        routes = _ports(cluster_port, size, free)
        first = ServerConfig(store_dir=self.store_dir)  # one control password for all nodes
        self.control_password = first.control_password
        self.nodes: list[NatsServer] = []
        for i in range(size):
            peers = [f"nats-route://{host}:{routes[j]}" for j in range(size) if j != i]
            config = ServerConfig(
                store_dir=self.store_dir / f"node-{i}",
                host=host,
                port=clients[i],
                monitor_port=monitors[i],
                token=self.token,
                users=self.users,
                root_password=root_password,
                control_password=self.control_password,
                server_name=f"memphis-{i}",
                sync_interval=sync,
                cluster=ClusterConfig(port=routes[i], routes=peers, name=cluster_name),
            )
            self.nodes.append(NatsServer(config))

    # -- addresses and credentials ---------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """``nats://host:port`` of every node, in index order."""
        return [f"nats://{n.config.host}:{n.config.port}" for n in self.nodes]

    @property
    def servers(self) -> str:
        """``host:port,host:port,...``: the form the Memphis clients' ``connect()`` takes."""
        return ",".join(f"{n.config.host}:{n.config.port}" for n in self.nodes)

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://{n.config.host}:{n.config.monitor_port}" for n in self.nodes]

    @property
    def password_mode(self) -> bool:
        return self.users is not None

    def connect_options(self, username: str = "root") -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` with every node as a seed server."""
        opts: dict[str, Any] = {"servers": self.urls}
        if self.users is None:
            if self.token:
                opts["token"] = self.token
            return opts
        pw = self.root_password if username == "root" else self.users[username]
        opts.update(user=f"{username}$1", password=pw)
        return opts

    def control_plane_auth(self) -> dict[str, Any]:
        """The credentials a :class:`ControlPlane` uses on this cluster."""
        if self.users is None:
            return {"token": self.token}
        return {"user": CONTROL_USER, "password": self.control_password}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0, cancel: threading.Event | None = None) -> LocalCluster:
        """Start every node and wait until each serves and all agree on a meta leader.

        The nodes are launched together: a clustered node reports itself healthy only once a
        meta leader exists, which needs a majority of the nodes running.

        Raises:
            StoreInUseError: another broker holds the store (or a node's store).
            ServerStartError: a node exited (its reason, prefixed with the node), start-up was
                cancelled, or the cluster was not ready within ``timeout`` seconds. Every node
                is stopped then.
        """
        deadline = time.monotonic() + timeout
        self.lock.acquire()
        try:
            for node in self.nodes:
                node.launch()
            for i, node in enumerate(self.nodes):
                try:
                    node.wait_ready(max(0.1, deadline - time.monotonic()), cancel)
                except ServerStartError as err:
                    raise ServerStartError(f"node {i}: {err.reason}", err.log_tail) from None
            self.wait_for_meta_leader(max(0.1, deadline - time.monotonic()))
            if self._want_cp:
                self._control.start(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _new_control_planes(self) -> ControlPlaneGroup:
        known = list(self.nodes[0].config.all_users()) if self.password_mode else None
        return ControlPlaneGroup(
            [ControlPlane(url, users=known, **self.control_plane_auth()) for url in self.urls]
        )

    def stop(self) -> None:
        """Stop every node (SIGTERM, JetStream flushes) and release the store; a temporary
        store is removed."""
        self._control.stop()
        for node in self.nodes:
            node.stop()
        self.lock.release()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``, as a crash would."""
        self.nodes[index].kill()

    def stop_node(self, index: int) -> None:
        """Graceful shutdown of node ``index`` (SIGTERM)."""
        self.nodes[index].stop()

    def start_node(
        self, index: int, timeout: float = 30.0, cancel: threading.Event | None = None
    ) -> None:
        """(Re)start node ``index`` on its ports and store and wait until it serves again
        (which includes having found the meta leader).

        Raises:
            ServerStartError: as :meth:`NatsServer.start` (``cancel`` set, not ready within
                ``timeout`` seconds, or the process exited).
        """
        self.nodes[index].start(timeout, cancel)

    def restart(self, index: int, *, kill: bool = True, timeout: float = 30.0) -> None:
        """Kill -9 (default) or stop node ``index``, then start it again."""
        self.kill(index) if kill else self.stop_node(index)
        self.start_node(index, timeout)

    # -- cluster state -----------------------------------------------------------------------

    def jsz(self, index: int, query: str = "") -> dict[str, Any]:
        """Node ``index``'s ``/jsz`` monitoring document (``query`` e.g. ``"streams=true"``).

        Raises:
            OSError: the node does not answer.
        """
        url = f"{self.monitor_urls[index]}/jsz" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        return doc

    def _index(self, server_name: str | None) -> int | None:
        for i, node in enumerate(self.nodes):
            if node.config.server_name == server_name:
                return i
        return None

    def meta_leader(self) -> int | None:
        """Index of the JetStream meta leader as every running node reports it; None while
        there is none, or the running nodes disagree (an election is under way)."""
        seen: set[str | None] = set()
        for i, node in enumerate(self.nodes):
            if not node.running:
                continue
            try:
                meta = self.jsz(i).get("meta_cluster") or {}
            except (OSError, ValueError):
                return None
            seen.add(meta.get("leader"))
        if len(seen) != 1:
            return None
        leader = self._index(seen.pop())
        return leader if leader is not None and self.nodes[leader].running else None

    def wait_for_meta_leader(self, timeout: float = 30.0, *, not_index: int | None = None) -> int:
        """Wait until :meth:`meta_leader` names a running node (other than ``not_index``, to
        wait for a new election after killing the leader) and return its index.

        Raises:
            TimeoutError: no such leader within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            leader = self.meta_leader()
            if leader is not None and leader != not_index:
                return leader
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no JetStream meta leader after {timeout:g} s")
            time.sleep(_POLL_S)  # polling the servers' state, not synchronising with a thread

    def stream_leader(self, stream: str) -> int | None:
        """Index of the node leading ``stream`` (any account), from the running nodes'
        ``/jsz``; None if no running node hosts it or it has no leader right now."""
        for i, node in enumerate(self.nodes):
            if not node.running:
                continue
            with contextlib.suppress(OSError, ValueError):
                doc = self.jsz(i, "accounts=true&streams=true")
                for account in doc.get("account_details") or []:
                    for detail in account.get("stream_detail") or []:
                        if detail.get("name") == stream:
                            leader = (detail.get("cluster") or {}).get("leader")
                            found = self._index(leader)
                            if found is not None and self.nodes[found].running:
                                return found
        return None

    def wait_for_stream_leader(
        self, stream: str, timeout: float = 30.0, *, not_index: int | None = None
    ) -> int:
        """Wait until ``stream`` has a leader on a running node (other than ``not_index``).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            leader = self.stream_leader(stream)
            if leader is not None and leader != not_index:
                return leader
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stream {stream!r} has no leader after {timeout:g} s")
            time.sleep(_POLL_S)  # polling the servers' state
