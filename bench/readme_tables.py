"""Print the README's throughput tables (markdown) from a ``bench/throughput.py --json`` file.

The README's "Performance" figures are pasted from this output, so every figure there is one
that a single ``make bench`` run printed (median msgs/s, and in brackets the median of the
per-run ratios to the limit, as the table of ``throughput.py`` computes it).

Run: ``.venv/bin/python bench/readme_tables.py [bench/out/throughput.json]``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OURS = ("memphis_sync", "memphis_asyncio", "memphis_trio")
CLIENTS = (*OURS, "nats-py", "memphis-py", "limit")
ROWS = (
    ("sync", "sync produce (wait for each PubAck)"),
    ("async", "async produce (all PubAcks confirmed)"),
    ("fetch100", "fetch + ack, batch 100"),
    ("fetch1000", "fetch + ack, batch 1000"),
    ("consume100", "consume(handler) + ack, batch 100"),
)


def _ratio(mine: list[float], limit: list[float]) -> float:
    if len(mine) != len(limit):
        return statistics.median(mine) / statistics.median(limit)
    return statistics.median(a / b for a, b in zip(mine, limit, strict=True))


def table(cells: dict[tuple[str, str, int], list[float]], size: int) -> list[str]:
    lines = [
        "| workload | " + " | ".join(CLIENTS) + " |",
        "|---" * (len(CLIENTS) + 1) + "|",
    ]
    for op, label in ROWS:
        limit = cells.get(("limit", op, size))
        row = [label]
        for client in CLIENTS:
            rates = cells.get((client, op, size))
            if not rates:
                row.append("-")
            elif client == "limit":
                row.append(f"**{statistics.median(rates):,.0f}**")
            else:
                share = f" ({_ratio(rates, limit):.2f})" if limit else ""
                row.append(f"{statistics.median(rates):,.0f}{share}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "bench" / "out" / "throughput.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    cells = {(c["client"], c["op"], c["size"]): c["rates"] for c in doc["cells"]}
    for size in (128, 1024):
        print(f"{size} B:" if size < 1024 else "1 KiB:")
        print("\n".join(table(cells, size)))
        print()
    print("Client CPU per message, microseconds (median per client, range over clients):")
    cpu = {(c["client"], c["op"], c["size"]): c["cpu_us"] for c in doc["cells"]}
    for op, label in ROWS:
        for size in (128, 1024):
            ours = [
                statistics.median(cpu[client, op, size])
                for client in OURS
                if cpu.get((client, op, size))
            ]
            others = ", ".join(
                f"{client} {statistics.median(cpu[client, op, size]):.1f}"
                for client in CLIENTS
                if client not in OURS and cpu.get((client, op, size))
            )
            if ours:
                print(f"  {label}, {size} B: {min(ours):.1f}-{max(ours):.1f} ({others})")
    memory = doc.get("memory")
    if memory:
        print(
            f"Peak RSS: {memory['peak_mib'][0]:.1f} MiB at {memory['counts'][0]:,} msgs, "
            f"{memory['peak_mib'][1]:.1f} MiB at {memory['counts'][1]:,}"
        )
    print(
        f"Load average: {doc.get('loadavg_start', '?')} at the start, "
        f"{doc.get('loadavg_end', '?')} at the end; {doc['seconds']:.0f} s"
    )
    print()
    for goal in doc.get("goals", []):
        print(f"{goal['status']:<5} {goal['name']}: {goal['detail']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
