"""Atheris harness for the NATS/1.0 header block (``memphis_core.nats._headers``).

Invariants: ``parse_header_block`` returns ``(status, description, Headers)`` or raises
``RemoteProtocolError``, nothing else; what it accepts re-encodes with ``encode_header_block``
(never a ``LocalProtocolError``: parse and encode share one validity rule) to a block that parses
to the same result, and the cheap ``parse_status_line`` the parser uses agrees with it.

Run: ``python fuzz/fuzz_headers.py -max_total_time=60 -dict=fuzz/nats.dict fuzz/corpus/headers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from memphis_core import RemoteProtocolError
    from memphis_core.nats._headers import (
        Headers,
        encode_header_block,
        parse_header_block,
        parse_status_line,
    )


def test_one_input(data: bytes) -> None:
    try:
        status, description, headers = parse_header_block(data)
    except RemoteProtocolError:
        return
    assert parse_status_line(data) == (status, description)
    block = encode_header_block(headers, status=status, description=description)
    assert parse_header_block(block) == (status, description, headers), (data, block)
    # The collection itself: rebuilt from its pairs, it is the same.
    rebuilt = Headers(headers.items())
    assert rebuilt == headers
    assert rebuilt.items() == headers.items()
    for key in headers:
        assert headers[key] == headers.get_all(key)[0]


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
