"""EmbeddedBroker's own ports: picked free, and picked again when taken before nats-server binds."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from memphis_broker import _embedded, _server
from memphis_broker._embedded import EmbeddedBroker
from memphis_broker._server import ServerStartError, free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port someone else listens on (as a client's ephemeral port can land on a picked one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_picked_port_taken_before_start_is_picked_again(
    taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([free_port(), taken])  # the client port, then the monitoring port: taken
    monkeypatch.setattr(
        _embedded, "free_port", lambda host="127.0.0.1": next(picks, None) or free_port(host)
    )
    with EmbeddedBroker(control_plane=False) as broker:
        assert broker.monitor_port != taken
        assert broker.server.running


def test_a_port_the_caller_gave_is_never_changed(taken: int) -> None:
    broker = EmbeddedBroker(monitor_port=taken, control_plane=False)
    with pytest.raises(ServerStartError) as caught:
        broker.start()
    assert caught.value.port_conflict
    assert broker.monitor_port == taken
    broker.stop()


def test_free_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    # CI failed once when a cluster node's route port, picked by binding port 0, was taken a
    # moment later as the local port of another node's outgoing route dial.
    low = _server._ephemeral_low()
    ports = _server.free_ports(60)
    assert len(set(ports)) == 60
    assert all(port < low for port in ports), (low, ports)
    for port in ports:  # each still bindable: nothing else listens there
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
