"""Cluster mode: ``memphis-broker --cluster 3`` as docs/cluster.md shows it, and the
``nats_cluster`` fixture that the client failover tests use."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path

import nats

import memphis_sync
from memphis_broker import LocalCluster, admin_context
from memphis_broker._launcher import MAX_START_FAILURES
from tests.support.cluster import (
    memphis_cluster,  # noqa: F401  (pytest fixture)
    nats_cluster,  # noqa: F401  (pytest fixture)
    start_control_planes,
    stream_leader_via_api,
)
from tests.support.launcher import Launcher, launcher


def cluster_launcher(store: Path) -> AbstractContextManager[Launcher]:
    """``memphis-broker --cluster 3`` on free ports with ``store`` (a :func:`launcher`)."""
    return launcher(
        "--cluster", "3", "--port", "0", "--monitor-port", "0", "--store-dir", str(store)
    )


def test_cli_cluster_as_in_docs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # docs/cluster.md: `memphis-broker --cluster 3` (free ports here, not 6666..6668)
    with cluster_launcher(store) as proc:
        line = proc.ready(60)
        assert line.startswith("memphis-broker ready: servers "), line
        servers = line.split("servers ", 1)[1].split(" ", 1)[0].split(",")
        assert len(servers) == 3
        assert len(set(servers)) == 3

        async def check() -> None:
            first = await nats.connect(f"nats://{servers[0]}", token="memphis")
            try:
                # The control plane answers (one instance per node).
                body = {"name": "clustered", "partitions_number": 1, "username": "root"}
                msg = await first.request(
                    "$memphis_station_creations", json.dumps(body).encode(), timeout=10
                )
                assert msg.data == b""
                await first.jetstream().add_stream(name="r3", subjects=["r3.>"], num_replicas=3)
            finally:
                await first.close()
            for server in servers:
                nc = await nats.connect(f"nats://{server}", token="memphis", allow_reconnect=False)
                try:
                    assert nc.connected_url is not None
                    assert f"{nc.connected_url.hostname}:{nc.connected_url.port}" == server
                    reply = await nc.request("$JS.API.STREAM.INFO.r3", b"", timeout=5)
                    cluster = json.loads(reply.data)["cluster"]
                    peers = {cluster["leader"], *(p["name"] for p in cluster["replicas"])}
                    assert peers == {"memphis-0", "memphis-1", "memphis-2"}
                finally:
                    await nc.close()

        asyncio.run(check())
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        assert proc.stdout[-1] == "memphis-broker stopped (SIGTERM)"
    for i in range(3):  # stop stops every node
        assert "Server Exiting" in (store / f"node-{i}" / "nats-server.log").read_text()


def _node_pid(store: Path, index: int) -> int:
    """The pid of node ``index``'s current nats-server, from its log's last start line."""
    starts = re.findall(
        r"^\[(\d+)\].*Starting nats-server",
        (store / f"node-{index}" / "nats-server.log").read_text(),
        re.MULTILINE,
    )
    assert starts, f"node {index} never logged its start"
    return int(starts[-1])


def _monitor_urls(store: Path, size: int) -> list[str]:
    """Every node's monitoring endpoint, from the config the launcher wrote for it."""
    urls = []
    for i in range(size):
        conf = (store / f"node-{i}" / "nats-server.conf").read_text()
        m = re.search(r'^http: "([^"]+)"', conf, re.MULTILINE)
        assert m, conf
        urls.append(f"http://{m.group(1)}")
    return urls


def _node_of_connection(monitor_urls: list[str], connection_id: str) -> int:
    """Index of the node whose /connz lists the Memphis connection ``connection_id``."""
    for i, monitor in enumerate(monitor_urls):
        try:
            with urllib.request.urlopen(f"{monitor}/connz", timeout=5) as resp:
                conns = json.loads(resp.read())["connections"] or []
        except OSError:
            continue  # a node that is down (being restarted) holds no connection
        if any((c.get("name") or "").startswith(f"{connection_id}::") for c in conns):
            return i
    raise AssertionError(f"connection {connection_id} is on no node")


async def _producers_active(servers: list[str], station: str) -> list[bool]:
    """``is_active`` of every producer row of ``station`` (the control plane's state)."""
    urls = [f"nats://{s}" for s in servers]
    async with admin_context(urls, token="memphis", timeout=10) as ctx:
        rows = [doc for _k, doc in await ctx.store.producers.scan()]
    return [bool(r["is_active"]) for r in rows if r["station"] == station]


def test_cli_cluster_restarts_a_killed_node_and_the_client_fails_over(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with cluster_launcher(store) as proc:
        line = proc.ready(60)
        servers = line.split("servers ", 1)[1].split(" ", 1)[0].split(",")
        monitors = _monitor_urls(store, 3)
        with memphis_sync.connect(servers, "root", connection_token="memphis") as conn:
            station = conn.create_station("failover", replicas=3)
            producer = station.create_producer("p")
            producer.produce(b"before", msg_id="m-before")
            victim = _node_of_connection(monitors, conn.connection_id)
            os.kill(_node_pid(store, victim), signal.SIGKILL)  # kill -9 the client's node
            proc.wait_line(
                lambda s: (
                    s
                    == f"memphis-broker: node {victim} exited: nats-server was killed by SIGKILL; "
                    "restarting it"
                ),
                timeout=60,
            )
            # The client fails over to another node: producing and fetching go on.
            producer.produce(b"after", msg_id="m-after")
            consumer = station.create_consumer("c", batch_max_wait_time=1.0)
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                for msg in consumer.fetch():
                    got.append(bytes(msg.data))
                    msg.ack()
            assert got == [b"before", b"after"]
            assert _node_of_connection(monitors, conn.connection_id) != victim
            # The launcher restarted the node, which serves again.
            proc.wait_line(
                lambda s: s == f"memphis-broker: node {victim} restarted (attempt 1)", timeout=60
            )
            with urllib.request.urlopen(f"{monitors[victim]}/healthz", timeout=5) as resp:
                assert resp.status == 200
            assert asyncio.run(_producers_active(servers, "failover")) == [True]
        # Connection tracking reads every node's /connz: the closed client's producer is
        # marked inactive, wherever it was connected.
        deadline = time.monotonic() + 30
        while asyncio.run(_producers_active(servers, "failover")) != [False]:
            assert time.monotonic() < deadline, "the producer was never marked inactive"
            time.sleep(0.2)  # polling the control plane's state, bounded by the deadline
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert proc.stdout[-1] == "memphis-broker stopped (SIGTERM)"


def test_cli_cluster_ends_when_a_node_keeps_failing_to_start(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with cluster_launcher(store) as proc:
        proc.ready(60)
        # Node 1's JetStream store becomes a plain file, then the node dies: every start of
        # it fails (nats-server cannot create its store directory).
        node = store / "node-1"
        (node / "jetstream").rename(node / "jetstream.moved")
        (node / "jetstream").write_text("not a directory")
        os.kill(_node_pid(store, 1), signal.SIGKILL)
        assert proc.wait(120) == 1
        assert proc.stderr[0] == (
            "memphis-broker: node 1 exited: nats-server was killed by SIGKILL; restarting it"
        )
        assert len(proc.stderr) == MAX_START_FAILURES + 1, proc.stderr
        assert proc.stderr[-1].startswith(
            f"memphis-broker: node 1 failed to start {MAX_START_FAILURES} times in a row: "
        )
        assert proc.stdout[-1] == "memphis-broker stopped (node 1 failed to start)"
    for i in (0, 2):  # the others were stopped
        assert "Server Exiting" in (store / f"node-{i}" / "nats-server.log").read_text()


def test_fixture_kill_restart_and_leaders(nats_cluster: LocalCluster) -> None:  # noqa: F811
    cluster = nats_cluster
    leader = cluster.meta_leader()
    assert leader is not None

    async def create(station: str) -> None:
        planes = await start_control_planes(cluster)
        try:
            nc = await nats.connect(**cluster.connect_options())
            body = {"name": station, "partitions_number": 1, "username": "root", "replicas": 3}
            # The SDKs' own wait for a station create (the control plane's budget is 15 s).
            msg = await nc.request(
                "$memphis_station_creations", json.dumps(body).encode(), timeout=30
            )
            assert msg.data == b""
            await nc.close()
        finally:
            await asyncio.gather(*(cp.stop() for cp in planes))

    asyncio.run(create("orders"))
    stream_leader = cluster.wait_for_stream_leader("orders$1")
    assert asyncio.run(stream_leader_via_api(cluster, "orders$1")) == stream_leader

    # Kill -9 the node leading the stream: the stream gets a new leader, the meta leader is (or
    # becomes) another node, and the node rejoins when restarted.
    cluster.kill(stream_leader)
    assert not cluster.nodes[stream_leader].running
    moved = cluster.wait_for_stream_leader("orders$1", not_index=stream_leader)
    assert moved != stream_leader
    assert asyncio.run(stream_leader_via_api(cluster, "orders$1")) == moved
    meta = cluster.wait_for_meta_leader(not_index=stream_leader)
    assert cluster.nodes[meta].running
    cluster.start_node(stream_leader)
    assert cluster.nodes[stream_leader].running
    assert cluster.wait_for_meta_leader() in range(3)
    # An R3 create right after the restart: the meta leader may not yet place replicas on the
    # rejoining node ("peer offline", 10005); the control plane retries within its budget.
    asyncio.run(create("after-restart"))
    assert cluster.wait_for_stream_leader("after-restart$1") in range(3)


def test_memphis_cluster_fixture_serves_on_every_node(
    memphis_cluster: LocalCluster,  # noqa: F811
) -> None:
    async def main() -> None:
        for i, url in enumerate(memphis_cluster.urls):
            nc = await nats.connect(url, token="memphis", allow_reconnect=False)
            try:
                body = {"name": f"st-{i}", "partitions_number": 1, "username": "root"}
                msg = await nc.request(
                    "$memphis_station_creations", json.dumps(body).encode(), timeout=10
                )
                assert msg.data == b""
            finally:
                await nc.close()

    asyncio.run(main())
    # One control plane per node, each connected to its own node.
    for monitor in memphis_cluster.monitor_urls:
        with urllib.request.urlopen(f"{monitor}/connz", timeout=5) as resp:
            conns = json.loads(resp.read())["connections"] or []
        assert [c.get("name") for c in conns].count("MEMPHIS control plane") == 1
