"""Cluster mode: ``memphis-broker --cluster 3`` as docs/cluster.md shows it, and the
``nats_cluster`` fixture that the client failover tests use."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import urllib.request
from pathlib import Path

import nats

from memphis_broker import LocalCluster
from tests.support.cluster import (
    memphis_cluster,  # noqa: F401  (pytest fixture)
    nats_cluster,  # noqa: F401  (pytest fixture)
    start_control_planes,
    stream_leader_via_api,
)
from tests.support.launcher import launcher


def test_cli_cluster_as_in_docs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # docs/cluster.md: `memphis-broker --cluster 3` (free ports here, not 6666..6668)
    with launcher(
        "--cluster", "3", "--port", "0", "--monitor-port", "0", "--store-dir", str(store)
    ) as proc:
        line = proc.ready()
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


def test_cli_cluster_exits_when_a_node_dies(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with launcher(
        "--cluster", "3", "--port", "0", "--monitor-port", "0", "--store-dir", str(store)
    ) as proc:
        proc.ready()
        first = (store / "node-1" / "nats-server.log").read_text().splitlines()[0]
        m = re.match(r"\[(\d+)\]", first)
        assert m, first
        os.kill(int(m.group(1)), signal.SIGKILL)
        assert proc.wait() == 1
        assert proc.stderr == ["memphis-broker: node 1 exited: nats-server was killed by SIGKILL"]
        assert proc.stdout[-1] == "memphis-broker stopped (node 1 exited)"
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
