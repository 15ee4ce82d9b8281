"""The console with ``--cluster`` and ``--nats-url``: it reads the shared buckets and every
node's monitoring endpoint, so the figures are the same whichever node serves it."""

from __future__ import annotations

import base64
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from tests.support.launcher import launcher
from tests.support.names import TOKEN
from tests.support.waits import wait_until


def _scrape(console_url: str, user: str = "root", secret: str = TOKEN) -> str:
    """``/metrics`` as Prometheus' ``basic_auth`` scrapes it."""
    request = urllib.request.Request(f"{console_url}metrics")
    credentials = base64.b64encode(f"{user}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return str(resp.read().decode())


def _metrics(console_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = _scrape(console_url)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _console_url(line: str) -> str:
    url = re.search(r", console (http://\S+/)", line)
    assert url, line
    return url.group(1)


def _produce(host_port: str, station: str, count: int) -> None:
    host, port = host_port.rsplit(":", 1)
    with memphis.connect(host, "root", connection_token=TOKEN, port=int(port)) as conn:
        producer = conn.create_station(station, partitions_number=2).create_producer("p")
        for i in range(count):
            producer.produce(f"m{i}".encode())


def test_console_in_cluster_mode_sees_every_node(tmp_path: Path) -> None:
    args = ["--cluster", "3", "--port", "0", "--monitor-port", "0", "--console-port", "0"]
    with launcher(*args, "--store-dir", str(tmp_path / "store")) as proc:
        line = proc.ready(timeout=90)
        servers = line.split("servers ", 1)[1].split(" ", 1)[0].split(",")
        _produce(servers[2], "clustered", 4)  # through another node than the first
        url = _console_url(line)

        def all_healthy() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            # A node's /healthz can say "not ok" for a moment while the cluster settles.
            metrics = _metrics(url)
            healthy = {k[1]: v for k, v in metrics.items() if k[0] == "memphis_server_healthy"}
            assert set(healthy) == {(("server", f"memphis-{i}"),) for i in range(3)}
            return metrics if set(healthy.values()) == {1.0} else None

        metrics = wait_until(all_healthy, timeout=30, what="every node healthy in /metrics")
        assert metrics is not None  # wait_until returns a truthy value
        assert metrics[("memphis_station_messages", (("station", "clustered"),))] == 4
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_console_in_attach_mode(tmp_path: Path) -> None:
    with EmbeddedBroker(store_dir=tmp_path / "nats", control_plane=False) as server:
        args = ["--nats-url", server.url, "--monitor-url", server.monitor_url]
        with launcher(*args, "--console-port", "0") as proc:
            line = proc.ready(timeout=60)
            _produce(f"{server.host}:{server.port}", "attached", 3)
            metrics = _metrics(_console_url(line))
            assert metrics[("memphis_station_messages", (("station", "attached"),))] == 3
            assert metrics[("memphis_server_healthy", (("server", "memphis-0"),))] == 1
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0


def test_password_mode_logins_are_the_broker_users(tmp_path: Path) -> None:
    args = ["--port", "0", "--monitor-port", "0", "--console-port", "0", "--password-auth"]
    with launcher(*args, "--user", "app:S3cret", "--store-dir", str(tmp_path)) as proc:
        url = _console_url(proc.ready(timeout=60))
        assert "memphis_stations" in _scrape(url, "root", "memphis")  # --root-password
        assert "memphis_stations" in _scrape(url, "app", "S3cret")
        for user, secret in (("app", "wrong"), ("nobody", "S3cret"), ("root", TOKEN + "x")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _scrape(url, user, secret)
            assert refused.value.code == 401
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
