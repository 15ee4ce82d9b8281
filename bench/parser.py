"""Parser throughput: memphis_core's sans-IO ``Parser`` against nats-py's legacy parser.

Both parse the *same* byte stream (MSG or HMSG frames with JetStream-style subjects and reply
subjects, 128 B or 1 KiB payloads) cut into 64 KiB reads, the size a frontend reads at a time.
nats-py's ``nats.protocol.parser.Parser`` is async and calls back into a client object, so it is
driven by asyncio with a stub client that only counts; the event loop starts before the clock.

Neither side decodes header lines in the main rows: nats-py's parser hands the raw block to its
client, ours defers decoding to the first ``Msg.headers`` access (both check framing; ours also
parses the status line). The ``+hdr`` rows decode every header block: ours through
``Msg.headers``, nats-py through its client's ``_process_headers`` (on an unconnected ``Client``).

Timing is CPU time of this process (``time.process_time``), not wall time: the machine is shared
with other test suites and nats-server instances, and CPU time is far less sensitive to that.
The two parsers run interleaved (ABBA order) and the ratio is the median of per-round ratios, so
drifts in machine speed hit both sides alike.

Run: ``.venv/bin/python bench/parser.py [--runs 7] [--messages 200000] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memphis_core.nats._parser import Parser

CHUNK = 64 * 1024
SUBJECT = b"orders$1.final"
HEADER_BLOCK = (
    b"NATS/1.0\r\n"
    b"$memphis_connectionId: 6f1c4b8e-2d0a-4c8e-9a51-3f2b7d9e0c11\r\n"
    b"$memphis_producedBy: web-producer-1\r\n"
    b"msg-id: order-000123456\r\n"
    b"Nats-Msg-Id: order-000123456\r\n"
    b"\r\n"
)
_clock = time.process_time

Runner = Callable[[list[bytes], bool], tuple[int, float]]


def _reply(seq: int) -> bytes:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>
    return b"$JS.ACK.orders$1.billing.1.%d.%d.1764241234567890123.%d" % (
        seq,
        seq,
        1000 - seq % 1000,
    )


def build_stream(kind: str, size: int, count: int) -> bytes:
    """``count`` MSG or HMSG frames with ``size``-byte payloads, as nats-server sends them."""
    payload = (b"x" * 61 + b"\n") * (size // 62) + b"y" * (size % 62)
    parts = []
    for seq in range(1, count + 1):
        if kind == "MSG":
            parts.append(b"MSG %b 7 %b %d\r\n%b\r\n" % (SUBJECT, _reply(seq), size, payload))
        else:
            hlen = len(HEADER_BLOCK)
            parts.append(
                b"HMSG %b 7 %b %d %d\r\n%b%b\r\n"
                % (SUBJECT, _reply(seq), hlen, hlen + size, HEADER_BLOCK, payload)
            )
    return b"".join(parts)


def chunks_of(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def run_ours(chunks: list[bytes], decode_headers: bool) -> tuple[int, float]:
    parser = Parser(max_payload=64 * 1024 * 1024)
    feed = parser.feed
    count = 0
    start = _clock()
    if decode_headers:
        for chunk in chunks:
            for frame in feed(chunk):
                frame.headers  # type: ignore[union-attr]  # noqa: B018 - the point is the decode
                count += 1
    else:
        for chunk in chunks:
            count += len(feed(chunk))
    return count, _clock() - start


class _StubClient:
    """The callbacks nats-py's parser awaits; counts messages, does nothing else."""

    def __init__(self, decode_headers: Callable[[bytes], Awaitable[object]] | None) -> None:
        self.count = 0
        self._decode = decode_headers

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, payload: bytes, hdr: bytes | None
    ) -> None:
        if hdr is not None and self._decode is not None:
            await self._decode(hdr)
        self.count += 1

    async def _process_ping(self) -> None:
        pass

    async def _process_pong(self) -> None:
        pass

    async def _process_info(self, info: object) -> None:
        pass

    async def _process_err(self, err: object) -> None:
        pass


def run_nats(chunks: list[bytes], decode_headers: bool) -> tuple[int, float]:
    from nats.protocol.parser import Parser as NatsParser

    decode = None
    if decode_headers:
        from nats.aio.client import Client

        decode = Client()._process_headers

    async def drive() -> tuple[int, float]:
        client = _StubClient(decode)
        parse = NatsParser(client).parse
        start = _clock()
        for chunk in chunks:
            await parse(chunk)
        return client.count, _clock() - start

    return asyncio.run(drive())


def measure(
    chunks: list[bytes], decode_headers: bool, expected: int, runs: int
) -> tuple[float, float, float]:
    """Median msgs/s of ours and of nats-py, and the median of the per-round ratios."""
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for round_ in range(runs):
        order: list[Runner] = [run_ours, run_nats] if round_ % 2 == 0 else [run_nats, run_ours]
        rates: dict[Runner, float] = {}
        for fn in order:
            gc.collect()
            count, elapsed = fn(chunks, decode_headers)
            if count != expected:
                raise SystemExit(f"{fn.__name__}: parsed {count} messages, expected {expected}")
            rates[fn] = count / elapsed
        ours.append(rates[run_ours])
        theirs.append(rates[run_nats])
        ratios.append(rates[run_ours] / rates[run_nats])
    return statistics.median(ours), statistics.median(theirs), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="interleaved runs per case (>= 5)")
    ap.add_argument("--messages", type=int, default=200_000, help="messages per stream")
    ap.add_argument("--quick", action="store_true", help="20k messages, 5 runs (smoke test)")
    ap.add_argument("--no-headers-rows", action="store_true", help="skip the +hdr rows")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.runs = 20_000, 5

    cases = [("MSG", 128, False), ("MSG", 1024, False), ("HMSG", 128, False), ("HMSG", 1024, False)]
    if not args.no_headers_rows:
        cases += [("HMSG", 128, True), ("HMSG", 1024, True)]

    print(
        f"Python {sys.version.split()[0]}, {args.messages} messages/stream, "
        f"{CHUNK // 1024} KiB reads, CPU time, median of {args.runs} interleaved runs"
    )
    header = f"{'case':<16}{'ours msg/s':>14}{'nats-py msg/s':>16}{'ratio':>8}{'MB/s ours':>12}"
    print(header)
    print("-" * len(header))
    worst = float("inf")
    for kind, size, decode in cases:
        stream = build_stream(kind, size, args.messages)
        chunks = chunks_of(stream)
        ours, theirs, ratio = measure(chunks, decode, args.messages, args.runs)
        if not decode:
            worst = min(worst, ratio)
        mbs = ours * len(stream) / args.messages / 1e6
        name = f"{kind} {size} B" + (" +hdr" if decode else "")
        print(f"{name:<16}{ours:>14,.0f}{theirs:>16,.0f}{ratio:>7.2f}x{mbs:>12,.0f}")
    print(f"\nworst framing ratio: {worst:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
