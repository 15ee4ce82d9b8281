"""A 3-node nats-server JetStream cluster for tests (kill -9 / restart nodes, find leaders).

Use it by importing the fixture into a test module or a conftest::

    from tests.support.cluster import nats_cluster  # noqa: F401  (pytest fixture)

    def test_failover(nats_cluster: LocalCluster) -> None:
        nats_cluster.servers            # "127.0.0.1:p0,127.0.0.1:p1,127.0.0.1:p2" for connect()
        nats_cluster.urls               # ["nats://127.0.0.1:p0", ...]
        nats_cluster.connect_options()  # nats.connect(**...) kwargs: all nodes, token "memphis"
        leader = nats_cluster.meta_leader()            # index of the JetStream meta leader
        nats_cluster.stream_leader("orders$1")         # index of the node leading that stream
        nats_cluster.kill(leader)                      # kill -9 node `leader`
        nats_cluster.wait_for_meta_leader(not_index=leader)  # a new one, elected by the others
        nats_cluster.start_node(leader)                # restart it: same ports and store

The fixture (function scope) yields a started :class:`memphis_broker.LocalCluster`:

* three nodes ``memphis-0..2`` on free loopback ports, each with its own file store under
  ``tmp_path/cluster/node-<i>``, routes to the other two, token auth (token ``memphis``), the
  JetStream meta leader already elected;
* no control plane: start one with ``ControlPlane(url, **cluster.control_plane_auth())``, or use
  :func:`start_control_planes` below for one per node, as production runs it; or use the
  ``memphis_cluster`` fixture, the same cluster with one control plane per node already
  running in a background thread (``LocalCluster(control_plane=True)``), ready for the Memphis
  SDKs: ``connect(memphis_cluster.servers, "root", connection_token="memphis")``. The control
  plane's KV buckets survive the loss of a node only once they are replicated (R3 on a
  3-node cluster, the control plane's own setting);
* everything is stopped (SIGTERM) at teardown, killed nodes included.

:class:`LocalCluster` methods (indexes are 0-based; timeouts in seconds):

* ``kill(i)`` SIGKILL, ``stop_node(i)`` SIGTERM, ``start_node(i, timeout=30)`` starts again and
  waits until the node serves and sees a meta leader, ``restart(i, kill=True)`` both.
* ``meta_leader() -> int | None`` (None during an election or when the running nodes disagree),
  ``wait_for_meta_leader(timeout=30, not_index=None) -> int``.
* ``stream_leader(stream) -> int | None`` (any account, from the nodes' ``/jsz``),
  ``wait_for_stream_leader(stream, timeout=30, not_index=None) -> int``.
  :func:`stream_leader_via_api` asks ``$JS.API.STREAM.INFO`` instead, as a client sees it.
* ``jsz(i, query="")`` node ``i``'s ``/jsz`` document; ``nodes[i]`` its
  :class:`memphis_broker.NatsServer` (``running``, ``pid``, ``config.port``, ``log_path``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from memphis_broker import ControlPlane, LocalCluster
from memphis_broker._control_thread import ControlPlaneGroup

__all__ = ["memphis_cluster", "nats_cluster", "start_control_planes", "stream_leader_via_api"]


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A started 3-node JetStream cluster (see the module docstring)."""
    with LocalCluster(3, tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
def memphis_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """The same cluster with one control plane per node running (see the module docstring)."""
    with LocalCluster(3, tmp_path / "cluster", control_plane=True) as cluster:
        yield cluster


async def start_control_planes(cluster: LocalCluster) -> list[ControlPlane]:
    """One started :class:`ControlPlane` per node, each attached to its own node (stop them
    with ``await asyncio.gather(*(cp.stop() for cp in planes))``), started as
    :class:`ControlPlaneGroup` does (the first alone)."""
    group = ControlPlaneGroup(
        [ControlPlane(url, **cluster.control_plane_auth()) for url in cluster.urls]
    )
    await group.start()
    return group.planes


async def stream_leader_via_api(cluster: LocalCluster, stream: str, timeout: float = 5.0) -> int:
    """Index of the node leading ``stream`` according to ``$JS.API.STREAM.INFO``.

    Raises:
        LookupError: the stream does not exist or has no leader.
    """
    nc = await nats.connect(**cluster.connect_options(), allow_reconnect=False)
    try:
        msg = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=timeout)
    finally:
        await nc.close()
    doc = json.loads(msg.data)
    leader = (doc.get("cluster") or {}).get("leader")
    for i, node in enumerate(cluster.nodes):
        if node.config.server_name == leader:
            return i
    raise LookupError(f"stream {stream!r}: {doc.get('error') or 'no leader'}")
