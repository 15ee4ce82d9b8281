"""Atheris harness for the NATS wire parser (``memphis_core.nats._parser.Parser``).

Invariants, for any input:

* ``feed`` accepts it or raises ``ParseError`` (a ``RemoteProtocolError``), nothing else; a
  parsed ``Msg.headers`` decodes lazily to ``Headers`` or raises ``RemoteProtocolError``;
* feeding it whole, byte by byte, or cut at input-derived points hands out the same frames
  (including those carried by the error) and either all fail or none does, with the same number
  of held-back bytes;
* accepted frames re-encode (test-only fake server) to a stream that parses to the same frames;
* ``buffered`` never exceeds the largest limit plus the CRLF.

Run: ``python fuzz/fuzz_parser.py -max_total_time=60 -dict=fuzz/nats.dict fuzz/corpus/parser``
(or ``-atheris_runs=N``); ``fuzz/run_all.py`` runs every harness.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sys
import zlib
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from memphis_core import RemoteProtocolError
    from memphis_core.nats._frames import Frame, Msg, Replies
    from memphis_core.nats._parser import ParseError, Parser

from tests.support.wire_vectors import encode_frames

_LIMITS = {
    "max_control_line": 256,
    "max_info_line": 1024,
    "max_payload": 4096,
    "max_header_size": 512,
}
_BOUND = max(_LIMITS["max_info_line"], _LIMITS["max_payload"]) + 2


# Re-encoding may add two bytes to a line (an -ERR text gets its quotes back), so the round trip
# parses with that much more room on the control line.
_ROUND_TRIP_LIMITS = {**_LIMITS, "max_control_line": _LIMITS["max_control_line"] + 2}


def _run(pieces: list[bytes], limits: dict[str, int] = _LIMITS) -> tuple[list[Frame], int | None]:
    """Every frame handed out, and the held-back bytes (None after a ParseError)."""
    parser = Parser(**limits)
    frames: list[Frame] = []
    for piece in pieces:
        try:
            frames += parser.feed(piece)
        except ParseError as exc:
            return frames + exc.frames, None
        if parser.buffered > _BOUND:
            raise AssertionError(f"buffer grew to {parser.buffered} bytes")
    return frames, parser.buffered


def _run_replies(pieces: list[bytes]) -> tuple[list[Frame], int | None]:
    """As ``_run``, by a parser that recognises replies on an inbox in bulk, each reply of a
    ``Replies`` run spelled out as the ``Msg`` it arrived as: what ``_run`` gives, exactly."""
    parser = Parser(**_LIMITS)
    parser.expect_replies(b"_INBOX.f.", 1)
    frames: list[Frame] = []

    def spell(new: list[Frame]) -> None:
        for frame in new:
            if isinstance(frame, Replies):
                frames.extend(
                    Msg(f"_INBOX.f.{token}", 1, None, payload)
                    for token, payload in zip(frame.tokens, frame.payloads, strict=True)
                )
            else:
                frames.append(frame)

    for piece in pieces:
        try:
            spell(parser.feed(piece))
        except ParseError as exc:
            spell(exc.frames)
            return frames, None
        if parser.buffered > _BOUND:
            raise AssertionError(f"buffer grew to {parser.buffered} bytes")
    return frames, parser.buffered


def _cut(data: bytes) -> list[bytes]:
    # Up to six cut points, a deterministic function of the input (so crashes reproduce and the
    # fuzzer explores cuts as it mutates the bytes).
    rng = random.Random(zlib.crc32(data))
    cuts = sorted(rng.sample(range(len(data) + 1), min(6, len(data) + 1)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_one_input(data: bytes) -> None:
    whole = _run([data])
    trickled = _run([data[i : i + 1] for i in range(len(data))])
    assert whole == trickled, (data, whole, trickled)
    pieces = _cut(data)
    assert _run(pieces) == whole, (data, pieces)

    # Replies read in bulk are the general path's frames in another form: never one more, one
    # less, out of order or with another subject, however the reads cut the bytes.
    assert _run_replies([data]) == whole, data
    assert _run_replies([data[i : i + 1] for i in range(len(data))]) == whole, data
    assert _run_replies(pieces) == whole, (data, pieces)

    frames, _ = whole
    again = _run([encode_frames(frames)], _ROUND_TRIP_LIMITS)
    assert again == (frames, 0), (data, frames, again)
    for frame in frames:
        if isinstance(frame, Msg):
            with contextlib.suppress(RemoteProtocolError):  # decoded lazily: value or RPE
                frame.headers  # noqa: B018


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
