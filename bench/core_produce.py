"""The core's share of an async produce, without a network or a frontend: where the us go.

A scripted broker (``tests/support/scripted_broker.py``) plays the server. Each round makes
``--window`` async produces of 128 B through ``Client.produce`` (what a frontend's
``produce(..., async_produce=True)`` calls under its lock), takes ``data_to_send()``, then feeds
one PubAck per produce, as nats-server writes them, in 64 KiB reads. It prints the CPU of the
two halves per message: the best tenth of the rounds, since the machine may be shared and a
round that lost the CPU says nothing about the code.

``--profile`` runs the same rounds under cProfile and adds up the time per layer (encode,
session, its request registry, parser, dispatch, produce bookkeeping, ...), a builtin's time
charged to the layer that called it. cProfile's cost per call inflates small functions: read
the shares, not the absolute figures.

Reproduce (an A/B: the same file, run against each checkout)::

    .venv/bin/python bench/core_produce.py --rounds 200
    .venv/bin/python bench/core_produce.py --rounds 100 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD: Final = b"x" * 128
READ: Final = 65536

# (a path fragment of the defining module, layer) in the order they are tried.
_LAYERS: Final = (
    ("nats/_parser.py", "parser"),
    ("nats/_commands.py", "encode (the PUB/HPUB writer)"),
    ("nats/_inflight.py", "session request registry (InFlight, deadline heap)"),
    ("nats/_session.py", "session (request, receive, events)"),
    ("nats/_events.py", "session (request, receive, events)"),
    ("nats/_frames.py", "session (request, receive, events)"),
    ("memphis/_dispatch.py", "dispatch"),
    ("memphis/_produce_state.py", "produce state table"),
    ("nats/_state.py", "produce state table"),
    ("memphis/_jetstream.py", "PubAck check"),
    ("memphis/_producers.py", "produce bookkeeping (Produce, operation, window)"),
    ("memphis/_operation.py", "produce bookkeeping (Produce, operation, window)"),
    ("memphis/_partitions.py", "partition and subject"),
    ("memphis/_stations.py", "partition and subject"),
    ("memphis/_client.py", "Client.produce"),
    ("heapq", "session request registry (InFlight, deadline heap)"),
)


class Loop:
    """One connected client, one producer, and the PubAck bytes for each round."""

    def __init__(self, window: int) -> None:
        from memphis_core import produce_options
        from tests.support.scripted_broker import INBOX, connected, producer

        self.window = window
        self.script = connected()
        self.producer = producer(self.script)
        self.script.take()
        self.opts = produce_options(async_produce=True)
        self.inbox = INBOX.encode() + b"."
        self.sid = self.script.sids[f"{INBOX}.*"]
        self.seq = 0

    def acks(self, first_token: int) -> bytes:
        out = []
        for token in range(first_token, first_token + self.window):
            self.seq += 1
            body = b'{"stream":"orders$1","seq":%d}' % self.seq
            out.append(b"MSG %b%d %d %d\r\n%b\r\n" % (self.inbox, token, self.sid, len(body), body))
        return b"".join(out)

    def round(self, now: float) -> tuple[float, float]:
        """One window: (CPU seconds producing it, CPU seconds reading its PubAcks)."""
        client = self.script.client
        produce = client.produce
        producer, opts = self.producer, self.opts
        clock = time.process_time
        start = clock()
        ops = [produce(producer, None, opts, now, payload=PAYLOAD) for _ in range(self.window)]
        data = client.data_to_send()
        produced = clock()
        first = data.index(self.inbox) + len(self.inbox)
        acks = self.acks(int(data[first : data.index(b" ", first)]))
        reading = clock()
        for offset in range(0, len(acks), READ):
            client.receive_data(acks[offset : offset + READ], now)
        client.next_deadline()
        done = clock()
        if producer.in_flight or not all(op.done and op.error is None for op in ops):
            raise SystemExit("a produce was not acknowledged: the loop is broken")
        return produced - start, done - reading


def measure(rounds: int, window: int) -> tuple[float, float]:
    """Produce and PubAck us per message: the mean of the best tenth of ``rounds`` rounds."""
    loop = Loop(window)
    for i in range(max(rounds // 10, 1)):  # warm-up
        loop.round(float(i))
    produce: list[float] = []
    acks: list[float] = []
    for i in range(rounds):
        p, a = loop.round(float(i))
        produce.append(p)
        acks.append(a)
    best = max(rounds // 10, 1)
    produce.sort()
    acks.sort()
    return (
        sum(produce[:best]) / best / window * 1e6,
        sum(acks[:best]) / best / window * 1e6,
    )


def _layer(file: str, function: str) -> str:
    for fragment, name in _LAYERS:
        if fragment in file or fragment in function:
            return name
    return "the harness" if "core_produce" in file or "scripted_broker" in file else "other"


def profile(rounds: int, window: int) -> str:
    """Self time per layer under cProfile, as shares."""
    loop = Loop(window)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(rounds):
        loop.round(float(i))
    profiler.disable()
    stats = pstats.Stats(profiler)
    layers: dict[str, float] = {}
    entries = stats.stats  # type: ignore[attr-defined]
    for (file, _, function), (_, _, own, _, callers) in entries.items():
        if file == "~" and callers:
            # A builtin (dict.get, int, a regex match): its time belongs to whoever called it.
            for (caller_file, _, caller), timing in callers.items():
                name = _layer(caller_file, caller)
                if "heapq" in function:
                    name = _layer("heapq", "")
                layers[name] = layers.get(name, 0.0) + timing[2]
            continue
        name = _layer(file, function)
        layers[name] = layers.get(name, 0.0) + own
    layers.pop("the harness", None)
    total = sum(layers.values())
    lines = [f"self time per layer under cProfile ({rounds} rounds of {window} produces):"]
    for name, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds / total:6.1%}  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="rounds measured (default 200)")
    ap.add_argument(
        "--window", type=int, default=1000, help="async produces per round (default 1000)"
    )
    ap.add_argument("--profile", action="store_true", help="self time per layer (cProfile)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.window < 1:
        raise SystemExit("--rounds and --window must be >= 1")
    if args.profile:
        print(profile(args.rounds, args.window))
        return 0
    produce, acks = measure(args.rounds, args.window)
    print(
        f"core CPU per async produce: produce {produce:.2f} us + PubAck {acks:.2f} us "
        f"= {produce + acks:.2f} us (best tenth of {args.rounds} rounds of {args.window})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
