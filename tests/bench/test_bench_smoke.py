"""Smoke tests for ``bench/throughput.py`` and ``bench/latency.py``: both still run end to end.

Each runs its script in ``--quick`` mode as a subprocess (as ``make bench`` would, its own
broker), restricted to memphis_sync and the limit loop so the pair stays well under a minute on
two cores, and checks the exit status, the rows and columns that matter (the limit client and
the ``÷limit`` ratio; the percentile lines) and the JSON reports. Nothing here judges the
numbers: that is the full benchmarks' job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THROUGHPUT = ROOT / "bench" / "throughput.py"
LATENCY = ROOT / "bench" / "latency.py"
OPS = ("sync", "async", "fetch100", "fetch1000", "consume100")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.timeout(90)
def test_quick_throughput_with_limit(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = _run(
        [str(THROUGHPUT), "--quick", "--only", "sync,limit", "--json", str(report)], timeout=80
    )
    lines = done.stdout.splitlines()
    head = next(line for line in lines if line.startswith("workload"))
    assert "÷limit" in head, head
    assert "÷nats-py" in head, head
    # Table rows: a 22-character workload/size label, two spaces, then the client.
    rows = [line for line in lines[lines.index(head) + 2 :] if line[24:25].strip()]
    rows = rows[: next((i for i, line in enumerate(rows) if not line[22:24].isspace()), None)]
    clients = [line[24:].split()[0] for line in rows]
    assert clients == ["memphis_sync", "limit"] * len(OPS) * 2, done.stdout
    assert rows[0].startswith("sync produce"), done.stdout
    assert any(line.startswith("consume() b100") for line in rows), done.stdout
    # Every memphis_sync row has a ratio to the limit (a number, not "-"); the limit has none.
    index = head.index("÷limit")
    ours = [line for line, client in zip(rows, clients, strict=True) if client == "memphis_sync"]
    assert all(line[index - 2 : index + 6].strip().endswith("x") for line in ours), done.stdout
    assert "memory bounded by the in-flight window" in done.stdout

    data = json.loads(report.read_text(encoding="utf-8"))
    cells = {(cell["client"], cell["op"], cell["size"]): cell for cell in data["cells"]}
    assert set(cells) == {
        (client, op, size)
        for client in ("memphis_sync", "limit")
        for op in OPS
        for size in (128, 1024)
    }
    assert all(cell["median"] > 0 for cell in cells.values())
    assert data["memory"]["peak_mib"][0] > 0
    # The load average goes with the figures (printed and kept), and the README's tables render
    # from this report.
    assert len(data["loadavg_start"].split()) == 3, data["loadavg_start"]
    assert "load average" in done.stdout
    tables = _run([str(ROOT / "bench" / "readme_tables.py"), str(report)], timeout=30).stdout
    assert "| sync produce (wait for each PubAck) | " in tables, tables
    assert "Load average: " + data["loadavg_start"] in tables, tables


@pytest.mark.timeout(60)
def test_quick_latency(tmp_path: Path) -> None:
    done = _run(
        [
            str(LATENCY),
            "--quick",
            "--only",
            "sync,limit",
            "--rates",
            "1000",
            "--duration",
            "0.5",
            "--out",
            str(tmp_path),
        ],
        timeout=50,
    )
    lines = done.stdout.splitlines()
    head = next(line for line in lines if line.startswith("measurement"))
    for column in ("p50 us", "p99 us", "p99.9 us"):
        assert column in head, head
    rtt = [line for line in lines if line.startswith("sync produce RTT")]
    assert rtt, done.stdout
    assert "memphis_sync" in rtt[0], done.stdout
    assert any(line.split()[:1] == ["limit"] for line in lines), done.stdout
    e2e = [line for line in lines if line.startswith("produce->handler @ 1,000/s")]
    assert e2e, done.stdout
    assert "memphis_sync" in e2e[0], done.stdout

    data = json.loads((tmp_path / "latency.json").read_text(encoding="utf-8"))
    figures = {(row["measurement"], row["client"]): row for row in data["rows"]}
    assert set(figures) == {
        ("sync produce RTT", "memphis_sync"),
        ("sync produce RTT", "limit"),
        ("produce->handler @ 1,000/s", "memphis_sync"),
    }
    for row in figures.values():
        assert row["count"] > 0
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["p99_9_us"] <= row["max_us"]
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
