"""Where memphis_sync's produce spends its time: a workload to profile, and a profile summary.

``run`` produces N messages of 128 B with memphis_sync to a broker that runs in ANOTHER process
(so the profile holds only the client: its calling thread and its I/O thread), sync (one at a
time) or async (``async_produce=True`` + ``flush``). ``summarize`` reads py-spy's ``raw``
output (collapsed stacks, one line per stack with its sample count) and prints the top
functions by self time (the leaf frame of a sample) and by total time (anywhere on the stack),
as microseconds per message, per thread.

Reproduce (a broker on port 7777, then the profile, then the summary)::

    .venv/bin/memphis-broker --port 7777 --monitor-port 0 --store-dir /tmp/mb &
    .venv/bin/py-spy record --gil --threads --rate 250 --format raw -o /tmp/async.txt -- \\
        .venv/bin/python bench/profile_produce.py run --port 7777 --op async --n 200000
    .venv/bin/python bench/profile_produce.py summarize /tmp/async.txt --n 200000 --rate 250

With ``--gil`` py-spy samples only the thread that holds the GIL, so the samples add up to the
Python CPU time of the process (what the summary calls us/msg); without it, a thread waiting for
the GIL counts as busy too.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD: Final = (b"0123456789abcdef" * 8)[:128]
# One frame of py-spy's raw stacks: "function (path/file.py:line)".
_FRAME: Final = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def run(host: str, port: int, op: str, n: int) -> None:
    import memphis_sync

    with memphis_sync.connect(host, "root", connection_token="memphis", port=port) as conn:
        station = f"profile_{op}_{int(time.time())}"
        conn.create_station(station)
        producer = conn.create_producer(station, "profile")
        produce = producer.produce
        start = time.perf_counter()
        if op == "sync":
            for _ in range(n):
                produce(PAYLOAD)
        else:
            for _ in range(n):
                produce(PAYLOAD, async_produce=True)
            producer.flush()
        elapsed = time.perf_counter() - start
        cpu = time.process_time()
        producer.destroy()
        conn.destroy_station(station)
    print(
        f"{op} produce: {n:,} messages in {elapsed:.2f} s = {n / elapsed:,.0f} msgs/s "
        f"(process CPU so far {cpu:.2f} s)"
    )


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("/memphis_core/", "/memphis_sync/", "/_memphis_io/", "/_memphis_async/"):
        if marker in file:
            file = marker.strip("/") + "/" + file.split(marker, 1)[1]
            break
    else:
        file = file.rsplit("/", 2)[-1] if "/" in file else file
    return f"{match['func']} ({file})"


def summarize(path: Path, n: int, rate: int, top: int) -> str:
    """The top-``top`` self and total times of a py-spy raw profile, in us per message."""
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    total_time: dict[str, Counter[str]] = defaultdict(Counter)
    per_thread: Counter[str] = Counter()
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # py-spy puts the thread first ("thread (0x...)" / "process ..."): keep its name.
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "all"
        body = [_frame_name(f) for f in frames if not f.startswith(("thread", "process"))]
        if not body:
            continue
        per_thread[thread] += count
        self_time[thread][body[-1]] += count
        for name in set(body):
            total_time[thread][name] += count

    def us(samples: int) -> float:
        return samples / rate / n * 1e6

    total = sum(per_thread.values())
    out = [
        f"py-spy raw profile {path.name}: {total:,} samples at {rate}/s over {n:,} messages "
        f"= {us(total):.1f} us of CPU per message"
    ]
    small = 0
    for thread, samples in per_thread.most_common():
        if samples < total * 0.02:
            small += samples  # start-up imports before the workload: not worth a table
            continue
        out.append("")
        out.append(f"== {thread}: {us(samples):.2f} us/msg ({samples:,} samples)")
        out.append(f"-- top {top} by self time (us/msg, share of this thread)")
        for name, count in self_time[thread].most_common(top):
            out.append(f"{us(count):8.3f}  {count / samples:6.1%}  {name}")
        out.append(f"-- top {top} by total time (us/msg, share of this thread)")
        for name, count in total_time[thread].most_common(top):
            out.append(f"{us(count):8.3f}  {count / samples:6.1%}  {name}")
    if small:
        out.append(f"\n(threads under 2% of the samples left out: {us(small):.2f} us/msg)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="produce N messages (the workload to profile)")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--op", choices=("sync", "async"), required=True)
    r.add_argument("--n", type=int, default=100_000)
    s = sub.add_parser("summarize", help="top functions of a py-spy raw profile")
    s.add_argument("profile", type=Path)
    s.add_argument("--n", type=int, required=True, help="messages the profiled run produced")
    s.add_argument("--rate", type=int, required=True, help="py-spy's --rate (samples/s)")
    s.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        if args.n < 1:
            raise SystemExit("--n must be >= 1")
        run(args.host, args.port, args.op, args.n)
    else:
        print(summarize(args.profile, args.n, args.rate, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
