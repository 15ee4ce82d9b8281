"""Failover on a real 3-node JetStream cluster, on every frontend (docs/cluster-client.md).

The client is given all three nodes. While a producer thread produces with ``msg_id`` (retrying
a failed produce with the same id, as an application does) and a consume loop acks, the node the
client dialled is killed with SIGKILL. The client must move to another node within seconds and
go on; at the end every acknowledged message has been consumed and the replicated stream stores
each one exactly once. The measured failover time (kill -> first produce acknowledged through
another node) is printed: run with ``-s`` to see it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from tests.support.failover_cluster import Cluster
from tests.support.frontends import Frontend
from tests.support.names import TOKEN, USER, unique
from tests.support.waits import wait_until

MESSAGES = 300
KILL_AFTER = 100  # acknowledged messages before the kill


def dialled(conn: Any) -> tuple[str, int]:
    """The server the connection uses now (the core's pool says; through the test proxy)."""
    target = getattr(conn, "_target", conn)
    server = target._client.current_server
    assert server is not None
    return (str(server[0]), int(server[1]))


class Producing(threading.Thread):
    """Produce m0..m{n-1} in order, each retried with its msg_id until acknowledged."""

    def __init__(self, memphis: Any, conn: Any, producer: Any, n: int) -> None:
        super().__init__(name="cluster-producer", daemon=True)
        self.memphis = memphis
        self.conn = conn
        self.producer = producer
        self.n = n
        self.acked: list[tuple[float, int]] = []  # (monotonic time, port it went through)
        self.errors: list[BaseException] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.n):
                deadline = time.monotonic() + 30.0
                while True:
                    try:
                        self.producer.produce(f"m{i}".encode(), msg_id=f"id-{i}", ack_wait=5.0)
                        break
                    except self.memphis.MemphisError as exc:
                        self.errors.append(exc)
                        if time.monotonic() > deadline:
                            raise
                self.acked.append((time.monotonic(), dialled(self.conn)[1]))
        except BaseException as exc:  # reported by the test
            self.failure = exc


def test_kill_the_dialled_node_while_producing_and_consuming(
    frontend: Frontend, memphis: Any, healthy_cluster: Cluster
) -> None:
    cluster = healthy_cluster
    station = unique("failover")
    conn = memphis.connect(
        cluster.urls, USER, connection_token=TOKEN, reconnect_interval=0.2, timeout=5.0
    )
    try:
        conn.create_station(station, replicas=3)
        producer = conn.create_producer(station, "p")
        consumer = conn.create_consumer(
            station, "c", pull_interval=0.05, batch_max_wait_time=0.5, max_ack_time=3.0
        )
        lock = threading.Lock()
        consumed: list[bytes] = []
        handler_errors: list[BaseException] = []

        def handler(msgs: list[Any], error: Any, context: Any) -> None:
            for msg in msgs or []:
                msg.ack()
                with lock:
                    consumed.append(bytes(msg.data))
            if error is not None:
                with lock:
                    handler_errors.append(error)

        # The worst case: the node we kill also leads the station's stream, so JetStream has to
        # elect a new leader (produces and pulls get 503s meanwhile) while the client fails over.
        host, port = dialled(conn)
        victim = cluster.node_on(port)
        leader_moved = cluster.move_leader_to(f"{station}$1", victim)
        consumer.consume(handler)
        producing = Producing(memphis, conn, producer, MESSAGES)
        producing.start()
        wait_until(
            lambda: len(producing.acked) >= KILL_AFTER or producing.failure,
            timeout=30,
            what=f"{KILL_AFTER} acknowledged produces",
        )
        assert dialled(conn) == (host, port)
        victim.kill()
        killed_at = time.monotonic()

        # The client leaves the dead node by itself, for another one, within seconds.
        wait_until(
            lambda: conn.is_connected and dialled(conn)[1] != port,
            timeout=5,
            what="the client to connect to another node",
        )
        moved_at = time.monotonic()
        producing.join(120)
        assert not producing.is_alive()
        assert producing.failure is None, repr(producing.failure)
        after = [t for t, p in producing.acked if t > killed_at and p != port]
        assert after, "no produce was acknowledged through another node"
        failover = after[0] - killed_at
        assert len(producing.acked) == MESSAGES

        expected = {f"m{i}".encode() for i in range(MESSAGES)}

        def all_consumed() -> bool:
            with lock:
                return expected <= set(consumed)

        wait_until(all_consumed, timeout=60, what="every acknowledged message to be consumed")
        consumer.stop_consume()
        stored = cluster.stream_messages(f"{station}$1")
        with lock:
            redelivered = len(consumed) - len(set(consumed))
        print(
            f"\nCLUSTER-FAILOVER frontend={frontend.name} killed={host}:{port} "
            f"stream_leader_killed={leader_moved} "
            f"reconnected_in={moved_at - killed_at:.2f}s "
            f"first_produce_acked_in={failover:.2f}s "
            f"produce_errors={dict(Counter(type(e).__name__ for e in producing.errors))} "
            f"consume_errors={dict(Counter(type(e).__name__ for e in handler_errors))} "
            f"redelivered={redelivered} stored={stored}"
        )
        assert stored == MESSAGES  # none stored twice (msg_id dedup across the failover)
        # Bounded by JetStream's election (4 to 9 s) plus one ack_wait of the produce in
        # flight; generous for a loaded 2-core machine.
        assert failover < 20.0
        assert not [e for e in handler_errors if isinstance(e, memphis.StationUnreachableError)]
    finally:
        conn.close()


def test_servers_advertised_by_the_cluster_join_the_pool(
    memphis: Any, healthy_cluster: Cluster
) -> None:
    one = healthy_cluster.nodes[0]
    conn = memphis.connect(one.url, USER, connection_token=TOKEN)
    alone = memphis.connect(one.url, USER, connection_token=TOKEN, ignore_discovered_servers=True)
    try:
        ports = {n.port for n in healthy_cluster.nodes}

        def pool(c: Any) -> set[int]:
            return {int(p) for _, p in getattr(c, "_target", c)._client.session.servers}

        wait_until(lambda: pool(conn) == ports, timeout=5, what="connect_urls in the pool")
        assert pool(alone) == {one.port}
    finally:
        conn.close()
        alone.close()


def test_lame_duck_mode_moves_the_client_before_the_node_goes(
    frontend: Frontend, memphis: Any, healthy_cluster: Cluster
) -> None:
    cluster = healthy_cluster
    station = unique("ldm")
    conn = memphis.connect(cluster.urls, USER, connection_token=TOKEN, reconnect_interval=0.2)
    try:
        conn.create_station(station, replicas=3)
        producer = conn.create_producer(station, "p")
        producer.produce(b"before", msg_id="before")
        host, port = dialled(conn)
        node = cluster.node_on(port)
        started = time.monotonic()
        node.lame_duck()
        try:
            wait_until(
                lambda: conn.is_connected and dialled(conn)[1] != port,
                timeout=3,  # the node only starts closing clients after its 2 s grace period
                what="the client to leave the node in lame duck mode",
            )
            moved = time.monotonic() - started
            assert node.running, "moved only when the node closed us: too late"
            producer.produce(b"after", msg_id="after", ack_wait=15.0)
            print(f"\nCLUSTER-LDM frontend={frontend.name} left={host}:{port} in={moved:.2f}s")
        finally:
            node.kill()  # rather than wait out its 30 s lame duck; revived after the test
    finally:
        conn.close()
