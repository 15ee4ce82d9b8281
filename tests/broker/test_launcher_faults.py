"""The launcher's failure behaviour (docs/broker.md, "Start-up and failures").

Each test is a user-reported fault: the launcher hung on a taken monitoring port, shared a
running broker's store, dumped tracebacks, hid its defaults, stopped silently, had no fsync
setting, and its admin commands retried for minutes or exited 0 on a missing station.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from memphis_broker import (
    EmbeddedBroker,
    NatsServer,
    ServerConfig,
    ServerStartError,
    StoreInUseError,
    free_port,
)
from memphis_broker.__main__ import _setup_logging, main
from memphis_broker._server import sync_setting
from tests.support.launcher import broker_args, launcher, run_cli
from tests.support.nats_server import find_nats_server, wait_for_port
from tests.support.waits import wait_until

ONE_LINE = re.compile(r"memphis-broker: [^\n]+\n")


def _one_error_line(stderr: str) -> str:
    """stderr must be exactly one ``memphis-broker: ...`` line (no traceback, no log dump)."""
    assert ONE_LINE.fullmatch(stderr), stderr
    return stderr.strip()


def _child_pid(store: Path) -> int:
    """The pid of the nats-server whose log is in ``store`` (the log's line prefix)."""
    first = (store / "nats-server.log").read_text().splitlines()[0]
    m = re.match(r"\[(\d+)\]", first)
    assert m, first
    return int(m.group(1))


def _varz(monitor_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def _jetstream_config(monitor_port: int) -> dict[str, Any]:
    """/varz's JetStream config. nats-server can answer /varz without it for a moment after
    /healthz is already ok (seen in CI: KeyError 'config'), so poll until it is there."""

    def config() -> dict[str, Any] | None:
        found: dict[str, Any] | None = _varz(monitor_port).get("jetstream", {}).get("config")
        return found

    found = wait_until(config, timeout=10.0, what="JetStream's config in /varz")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def other_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Another broker, with a control plane, whose ports the launcher under test runs into."""
    with EmbeddedBroker(store_dir=tmp_path_factory.mktemp("other")) as broker:
        asyncio.run(_create_station(broker, "present"))
        yield broker


async def _create_station(broker: EmbeddedBroker, name: str) -> None:
    nc = await nats.connect(**broker.connect_options())
    try:
        body = {"name": name, "partitions_number": 1, "username": "root"}
        msg = await nc.request("$memphis_station_creations", json.dumps(body).encode(), timeout=10)
        assert msg.data == b""
    finally:
        await nc.close()


# -- 1. readiness is judged on our own nats-server ---------------------------------------------


def test_taken_monitoring_port_fails_fast_instead_of_hanging(
    tmp_path: Path, other_broker: EmbeddedBroker
) -> None:
    # The other broker's /healthz answers 200 on this port; that must not count as ours.
    started = time.monotonic()
    out = run_cli(
        *broker_args(tmp_path / "store", free_port(), other_broker.monitor_port), timeout=30
    )
    assert out.returncode == 1
    line = _one_error_line(out.stderr)
    assert line == (
        f"memphis-broker: monitoring port {other_broker.monitor_port} on 127.0.0.1 "
        "is already in use"
    )
    assert "ready" not in out.stdout
    assert time.monotonic() - started < 15


def test_nats_server_exit_stops_the_launcher_with_its_reason(tmp_path: Path) -> None:
    store = tmp_path / "store"
    mon = free_port()
    with launcher(
        "--port", "0", "--monitor-port", str(mon), "--store-dir", str(store), "--sync", "always"
    ) as proc:
        line = proc.ready()
        assert _jetstream_config(mon)["sync_always"] is True  # fault 6, CLI side
        assert line.endswith(", token auth, fsync always"), line  # the mode in force, named
        os.kill(_child_pid(store), signal.SIGKILL)
        assert proc.wait() == 1
        assert proc.stderr == [
            "memphis-broker: nats-server exited: nats-server was killed by SIGKILL"
        ]
        assert proc.stdout[-1] == "memphis-broker stopped (nats-server exited)"


def test_signal_during_startup_stops_the_launcher(tmp_path: Path) -> None:
    # Attach mode with nothing to attach to: the launcher is waiting when SIGTERM arrives.
    with launcher("--nats-url", f"nats://127.0.0.1:{free_port()}", "--wait", "60", "-v") as proc:
        proc.wait_line(lambda s: "JetStream not ready yet" in s)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        assert time.monotonic() - started < 5
        assert proc.stdout == ["memphis-broker stopped (SIGTERM)"]
        # -v: DEBUG for the memphis_broker loggers
        assert any("DEBUG memphis_broker.launcher" in s for s in proc.stderr), proc.stderr


def test_config_error_is_reported_with_nats_servers_words(tmp_path: Path) -> None:
    server = NatsServer(ServerConfig(store_dir=tmp_path, port=free_port(), monitor_port=0))
    server.config.sync_interval = "bogus"  # bypasses sync_setting's check on purpose
    with pytest.raises(ServerStartError) as err:
        server.start(timeout=10)
    assert err.value.reason.startswith("nats-server: ")
    assert 'invalid duration "bogus"' in err.value.reason
    assert not server.lock.held  # a failed start leaves the store free


# -- 2. one broker per store -----------------------------------------------------------------


def test_second_broker_on_the_same_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    port = free_port()
    with launcher("--port", str(port), "--monitor-port", "0", "--store-dir", str(store)) as first:
        first.ready()
        conf = (store / "nats-server.conf").read_bytes()
        out = run_cli("--port", "0", "--monitor-port", "0", "--store-dir", str(store))
        assert out.returncode == 1
        line = _one_error_line(out.stderr)
        assert line == (
            f"memphis-broker: store {store} is in use by another memphis-broker "
            f"(pid {first.proc.pid}, nats-server pid {_child_pid(store)})"
        )
        assert (store / "nats-server.conf").read_bytes() == conf  # not rewritten
        # In-process too: an EmbeddedBroker cannot take the store either.
        with pytest.raises(StoreInUseError, match="in use by another memphis-broker"):
            EmbeddedBroker(store_dir=store, control_plane=False).start()

        async def still_serving() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", token="memphis")
            await nc.close()

        asyncio.run(still_serving())
        first.signal(signal.SIGTERM)
        assert first.wait() == 0


def test_orphaned_nats_server_keeps_the_store_locked(tmp_path: Path) -> None:
    # SIGKILL of the launcher leaves its nats-server running on the store: still locked.
    store = tmp_path / "store"
    with launcher("--port", "0", "--monitor-port", "0", "--store-dir", str(store)) as first:
        first.ready()
        orphan = _child_pid(store)
        first.proc.kill()
        first.wait()
    try:
        out = run_cli("--port", "0", "--monitor-port", "0", "--store-dir", str(store))
        assert out.returncode == 1
        assert f"nats-server pid {orphan})" in _one_error_line(out.stderr)
    finally:
        os.kill(orphan, signal.SIGKILL)


# -- 3. port in use --------------------------------------------------------------------------


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(
            "--port", str(port), "--monitor-port", "0", "--store-dir", str(tmp_path / "s")
        )
    assert out.returncode == 1
    assert _one_error_line(out.stderr) == (
        f"memphis-broker: client port {port} on 127.0.0.1 is already in use"
    )


# -- 4. defaults in --help -------------------------------------------------------------------


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for default in ("(default: 6666)", "(default: ./.memphis)", "(default: memphis)"):
        assert default in text
    assert "(default: 30.0)" in text  # --wait
    assert "(default: None)" not in text
    with pytest.raises(SystemExit):
        main(["dls", "list", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: nats://127.0.0.1:6666)" in text
    assert "(default: memphis)" in text
    assert "(default: 3.0)" in text  # --timeout


# -- 5. logging ------------------------------------------------------------------------------


def test_verbose_sets_debug_for_the_memphis_broker_loggers() -> None:
    root, ours = logging.getLogger(), logging.getLogger("memphis_broker")
    saved = (root.level, list(root.handlers), ours.level)
    try:
        _setup_logging(True)
        assert logging.getLogger("memphis_broker._control").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("nats").isEnabledFor(logging.DEBUG)
        _setup_logging(False)
        assert not logging.getLogger("memphis_broker._control").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        ours.setLevel(saved[2])


# -- 6. durability setting -------------------------------------------------------------------


def test_sync_setting_values() -> None:
    assert sync_setting(None) is None
    assert sync_setting("always") == "always"
    assert sync_setting("ALWAYS") == "always"
    assert sync_setting(1.5) == "1500ms"
    assert sync_setting("2") == "2000ms"
    assert sync_setting("100ms") == "100ms"
    assert sync_setting("1m30s") == "1m30s"
    for bad in ("0", "0s", -1, 0, float("nan"), float("inf"), "soon", "", True):
        with pytest.raises(ValueError, match="sync interval"):
            sync_setting(bad)
    conf = ServerConfig(store_dir=Path("/s"), sync_interval="always").render()
    assert 'jetstream { store_dir: "/s/jetstream", sync_interval: "always" }' in conf
    assert "sync_interval" not in ServerConfig(store_dir=Path("/s")).render()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--sync", "soon"], "argument --sync: sync interval must be"),
        (["--cluster", "1"], "cluster size must be 2 to 9: '1'"),
        (["--cluster", "x"], "not a number: 'x'"),
        (["--cluster", "3", "--nats-url", "nats://h:1"], "give only one"),
        (["--port", "70000"], "port must be 0 to 65535"),
    ],
)
def test_bad_options_are_usage_errors(
    args: list[str], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert text in capsys.readouterr().err


def test_embedded_broker_sync_interval_reaches_nats_server() -> None:
    with EmbeddedBroker(control_plane=False, sync_interval=1.5) as broker:
        js = _jetstream_config(broker.monitor_port)
        assert js["sync_interval"] == 1_500_000_000
        assert not js.get("sync_always")
    with EmbeddedBroker(control_plane=False) as broker:  # the documented default: 2 minutes
        assert _jetstream_config(broker.monitor_port)["sync_interval"] == 120 * 10**9


# -- 7. admin commands -----------------------------------------------------------------------


def test_admin_without_a_server_fails_fast() -> None:
    started = time.monotonic()
    out = run_cli("dls", "list", "--station", "x", "--nats-url", f"nats://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 5
    assert out.returncode == 1
    assert _one_error_line(out.stderr).endswith(": connection refused")


def test_admin_with_a_wrong_token_fails_fast(other_broker: EmbeddedBroker) -> None:
    started = time.monotonic()
    out = run_cli(
        "dls", "list", "--station", "present", "--nats-url", other_broker.url, "--token", "nope"
    )
    assert time.monotonic() - started < 5
    assert out.returncode == 1
    assert "rejected the credentials" in _one_error_line(out.stderr)


def test_admin_missing_station_is_an_error(other_broker: EmbeddedBroker) -> None:
    for cmd in (("dls", "list"), ("dls", "resend"), ("dls", "drop"), ("station", "remove")):
        out = run_cli(*cmd, "--station", "nope", "--nats-url", other_broker.url)
        assert out.returncode == 1, cmd
        assert _one_error_line(out.stderr) == "memphis-broker: station nope does not exist"
    out = run_cli("dls", "list", "--station", "Present", "--nats-url", other_broker.url)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")  # exists, no DLS rows


# -- 8. attach mode waits for JetStream ------------------------------------------------------


def test_attach_waits_for_jetstream_then_serves(tmp_path: Path) -> None:
    port = free_port()
    with launcher("--nats-url", f"nats://127.0.0.1:{port}", "--wait", "30", "-v") as proc:
        proc.wait_line(lambda s: "JetStream not ready yet" in s)
        with EmbeddedBroker(port=port, store_dir=tmp_path, control_plane=False):
            assert proc.ready().startswith(
                f"memphis-broker ready: attached to nats://127.0.0.1:{port}"
            )
            proc.signal(signal.SIGINT)
            assert proc.wait() == 0
            assert proc.stdout[-1] == "memphis-broker stopped (SIGINT)"


def test_attach_without_jetstream_times_out_with_one_line() -> None:
    port = free_port()
    plain = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=plain)
        out = run_cli("--nats-url", f"nats://127.0.0.1:{port}", "--wait", "1")
    finally:
        plain.terminate()
        plain.wait()
    assert out.returncode == 1
    assert _one_error_line(out.stderr) == (
        f"memphis-broker: JetStream at nats://127.0.0.1:{port} not ready after 1 s: "
        "JetStream is not enabled or not ready (no responders)"
    )


def test_attach_with_wrong_credentials_fails_at_once(other_broker: EmbeddedBroker) -> None:
    started = time.monotonic()
    out = run_cli("--nats-url", other_broker.url, "--token", "nope", "--wait", "30")
    assert time.monotonic() - started < 5  # no point waiting: the token will not change
    assert out.returncode == 1
    assert _one_error_line(out.stderr) == (
        f"memphis-broker: {other_broker.url} rejected the credentials (authorization "
        "violation): check --token or --nats-user/--nats-password"
    )
