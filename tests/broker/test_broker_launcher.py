"""The launcher: EmbeddedBroker, the CLI (run and attach modes), and both auth modes
(docs/protocol.md §10.3)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors
import pytest

from memphis_broker import EmbeddedBroker, find_nats_server, free_port
from memphis_broker._server import kill_process
from tests.support.control_client import connect, poison
from tests.support.launcher import BROKER, broker_args


def test_find_nats_server_is_the_wheel_binary() -> None:
    path = Path(find_nats_server())
    assert path.name == "nats-server"
    assert os.access(path, os.X_OK)


def test_embedded_broker_starts_fast_and_cleans_up() -> None:
    started = time.monotonic()
    broker = EmbeddedBroker().start()
    try:
        assert time.monotonic() - started < 3.0
        store = broker.store_dir
        assert (store / "nats-server.conf").exists()
        assert broker.url == f"nats://127.0.0.1:{broker.port}"

        async def ping() -> None:
            c = await connect(broker)
            assert await c.create_station("hello") == ""
            await c.nc.close()

        asyncio.run(ping())
    finally:
        broker.stop()
    assert not broker.server.running
    assert not store.exists()  # temporary store removed


def test_token_mode_rejects_a_wrong_token() -> None:
    with EmbeddedBroker(token="s3cret") as broker:

        async def main() -> None:
            with pytest.raises(nats.errors.Error):
                await nats.connect(
                    broker.url,
                    token="memphis",
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=2,
                )
            c = await connect(broker, username="anyone")  # token mode: any username
            assert await c.create_station("t", username="anyone") == ""
            await c.nc.close()

        asyncio.run(main())


def test_password_mode_users() -> None:
    with EmbeddedBroker(users={"alice": "Alice!123"}, root_password="R00t!pass") as broker:

        async def main() -> None:
            for user, pw in (
                ("root$1", "R00t!pass"),
                ("root", "R00t!pass"),
                ("alice$1", "Alice!123"),
                ("alice", "Alice!123"),
            ):
                nc = await nats.connect(broker.url, user=user, password=pw)
                await nc.close()
            with pytest.raises(nats.errors.Error):
                await nats.connect(
                    broker.url,
                    user="alice$1",
                    password="wrong",
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=2,
                )
            c = await connect(broker, username="alice")
            try:
                assert await c.create_station("pw", username="alice") == ""
                # Quirk fixed (docs/protocol.md §5.4 step 4): an unknown user is an error, not a
                # silent no-op
                assert await c.create_station("pw2", username="bob") == "User bob does not exist"
                reply = await c.create_producer("pw", "p")
                assert reply["error"] == ""
                c.username = "bob"
                assert (await c.create_producer("pw", "p"))["error"] == "User bob does not exist"
                assert await c.create_consumer("pw", "c") == "user does not exist"
                # poison detection works inside the $memphis account too; reading the DLS
                # rows (a control-plane bucket) takes root's rights (docs/broker.md,
                # "Permissions"), the requests still name alice
                admin = await connect(broker, username="root")
                admin.username = "alice"
                try:
                    row = await poison(admin, "pw", "grp", b"bad")
                finally:
                    await admin.nc.close()
                assert row["poisoned_cgs"] == ["grp"]
            finally:
                await c.nc.close()

        asyncio.run(main())


def _wait_line(proc: subprocess.Popen[str]) -> str:
    """The broker's one "ready" line (blocks until printed or exit; pytest-timeout bounds it)."""
    assert proc.stdout is not None
    return proc.stdout.readline()


def test_cli_run_and_sigterm(tmp_path: Path) -> None:
    port, mon = free_port(), free_port()
    proc = subprocess.Popen(
        [*BROKER, *broker_args(tmp_path / "store", port, mon)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _wait_line(proc)
        assert line.startswith(f"memphis-broker ready: nats://127.0.0.1:{port}"), line
        assert "token auth" in line

        async def use() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", token="memphis")
            msg = await nc.request(
                "$memphis_station_creations",
                json.dumps({"name": "cli", "partitions_number": 1, "username": "root"}).encode(),
                timeout=10,
            )
            assert msg.data == b""
            await nc.close()

        asyncio.run(use())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == "memphis-broker stopped (SIGTERM)\n"
        log = (tmp_path / "store" / "nats-server.log").read_text()
        assert "Server Exiting" in log  # nats-server was stopped too
    finally:
        kill_process(proc)


def test_cli_attach_mode(tmp_path: Path) -> None:
    with EmbeddedBroker(store_dir=tmp_path, control_plane=False) as server:
        proc = subprocess.Popen(
            [
                *BROKER,
                "--nats-url",
                server.url,
                "--monitor-url",
                server.monitor_url,
                "--token",
                "memphis",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = _wait_line(proc)
            assert line.startswith(f"memphis-broker ready: attached to {server.url}"), line

            async def use() -> None:
                c = await connect(server)
                assert await c.create_station("attached") == ""
                assert await c.api.stream_info("attached$1") is not None
                await c.nc.close()

            asyncio.run(use())
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
            assert server.server.running  # attach mode leaves the server alone
        finally:
            kill_process(proc)


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "memphis-broker"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "--store-dir" in out.stdout
    assert "(default: 6666)" in " ".join(out.stdout.split())  # undo line wrapping


def test_cli_password_mode_with_users_file(tmp_path: Path) -> None:
    port, mon = free_port(), free_port()
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": {"carol": "Carol!123"}}))
    proc = subprocess.Popen(
        [
            *BROKER,
            *broker_args(tmp_path / "store", port, mon),
            "--users-file",
            str(users),
            "--user",
            "dave:Dave!1234:x",
            "--root-password",
            "Root!1234",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _wait_line(proc)
        assert line.rstrip().endswith("user/password auth, fsync every 2m (nats-server default)"), (
            line
        )

        async def use() -> None:
            for user, pw in (
                ("carol$1", "Carol!123"),
                ("dave$1", "Dave!1234:x"),
                ("root$1", "Root!1234"),
            ):
                nc = await nats.connect(f"nats://127.0.0.1:{port}", user=user, password=pw)
                body = {
                    "name": f"st-{user[:4]}",
                    "partitions_number": 1,
                    "username": user.split("$")[0],
                }
                msg = await nc.request(
                    "$memphis_station_creations", json.dumps(body).encode(), timeout=10
                )
                assert msg.data == b"", user
                await nc.close()

        asyncio.run(use())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        kill_process(proc)
