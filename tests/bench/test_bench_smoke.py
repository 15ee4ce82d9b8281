"""Smoke test for ``bench/throughput.py``: the benchmark still runs end to end.

It runs ``--quick --only sync`` (one run, small N, memphis_sync only, its own broker) as a
subprocess, as ``make bench`` would, and checks the exit status, a table row, the goals block
and the JSON report. Nothing here judges the numbers: that is the full benchmark's job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "throughput.py"


@pytest.mark.timeout(90)
def test_quick_sync_run(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "sync", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if "memphis_sync" in line]
    assert any(line.startswith("sync produce") for line in rows), done.stdout
    assert any(line.lstrip().startswith("memphis_sync") for line in rows), done.stdout
    assert "memory bounded by the in-flight window" in done.stdout

    data = json.loads(report.read_text(encoding="utf-8"))
    cells = {(cell["client"], cell["op"], cell["size"]): cell for cell in data["cells"]}
    assert set(cells) == {
        ("memphis_sync", op, size)
        for op in ("sync", "async", "fetch100", "fetch1000")
        for size in (128, 1024)
    }
    assert all(cell["median"] > 0 for cell in cells.values())
    assert data["memory"]["peak_mib"][0] > 0
