"""Run ``python -m memphis_broker`` as a child process and read its output with deadlines."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from memphis_broker._server import stop_process

__all__ = ["BROKER", "Launcher", "broker_args", "launcher", "run_cli"]

#: The command that runs ``memphis-broker`` from this checkout.
BROKER = [sys.executable, "-m", "memphis_broker"]


def broker_args(store: Path, port: int = 0, monitor_port: int = 0) -> list[str]:
    """``memphis-broker`` arguments for a broker on ``store`` with these client and monitoring
    ports (0: free ones)."""
    return ["--port", str(port), "--monitor-port", str(monitor_port), "--store-dir", str(store)]


class Launcher:
    """A running ``memphis-broker``: its stdout and stderr lines arrive on queues (read by two
    threads), so a test can wait for a line with a deadline instead of blocking forever."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*BROKER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(name, f), daemon=True)
            for name, f in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for t in self._readers:
            t.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))
        self._lines.put((name, None))

    def _pump(self, timeout: float) -> tuple[str, str | None] | None:
        try:
            name, line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is not None:
            (self.stdout if name == "out" else self.stderr).append(line)
        return name, line

    def wait_line(self, match: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The first output line (stdout or stderr, from the start) that ``match`` accepts.

        Raises:
            AssertionError: none within ``timeout`` seconds (or the process closed both).
        """
        deadline = time.monotonic() + timeout
        closed = 0
        while True:
            for line in self.stdout + self.stderr:  # short lists: rescanning is cheap
                if match(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or closed == 2:
                raise AssertionError(
                    f"no matching line in {timeout} s; stdout={self.stdout} stderr={self.stderr}"
                )
            got = self._pump(remaining)
            if got is not None and got[1] is None:
                closed += 1

    def ready(self, timeout: float = 20.0) -> str:
        return self.wait_line(lambda s: s.startswith("memphis-broker ready:"), timeout)

    def wait(self, timeout: float = 20.0) -> int:
        """Exit status; all output is collected."""
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        while self._pump(0) is not None:
            pass
        return code

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Stop the launcher: SIGTERM first, so that it stops the nats-servers it started
        (they run in their own sessions and would outlive a SIGKILLed launcher), then SIGKILL
        if it has not exited within 30 s."""
        stop_process(self.proc, 30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def launcher(*args: str) -> Iterator[Launcher]:
    """A :class:`Launcher` that is killed at the end if still running."""
    proc = Launcher(list(args))
    try:
        yield proc
    finally:
        proc.close()


def run_cli(
    *args: str, timeout: float = 20.0, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command that should finish by itself (raises TimeoutExpired if it does not, and
    with ``check`` CalledProcessError if it fails)."""
    return subprocess.run(
        [*BROKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
