"""The launcher and the console: on by default, never a reason for the broker not to start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.launcher import broker_args, launcher

# The broker as `memphis-broker` runs it, with the console's web stack made unimportable.
_WITHOUT_STARLETTE = (
    "import sys; sys.modules['starlette'] = None; "
    "from memphis_broker.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


def _args(store: Path, console_port: str) -> list[str]:
    return [*broker_args(store), "--console-port", console_port]


def test_broker_starts_without_the_console_extra_and_says_why(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_STARLETTE, *_args(tmp_path, "0")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("memphis-broker ready: "), line
        assert (
            ", console off (starlette is not installed: pip install 'memphis-sansio[console]'), "
            "token auth" in line
        ), line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_console_port_in_use_leaves_the_broker_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with launcher(*_args(tmp_path, str(port))) as proc:
            line = proc.ready(timeout=60)
            assert f", console off (cannot listen on 127.0.0.1:{port}: " in line, line
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0


def test_console_port_off(tmp_path: Path) -> None:
    with launcher(*_args(tmp_path, "off")) as proc:
        assert ", console off (--console-port off), token auth" in proc.ready(timeout=60)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
