"""Regenerate the seed corpora in ``fuzz/corpus/{parser,headers}`` from the test vectors.

Run: ``.venv/bin/python fuzz/make_corpus.py``. Files are named after the vector ids; stale files
are removed, so the corpus always mirrors ``tests/support/wire_vectors.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.wire_vectors import (  # noqa: E402 - after the sys.path insert
    HEADER_INVALID,
    HEADER_VALID,
    PARSER_INVALID,
    PARSER_VALID,
)


def _write(directory: Path, entries: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        if stale.name not in entries:
            stale.unlink()
    for name, data in entries.items():
        (directory / name).write_bytes(data)


def _name(prefix: str, ident: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", ident)


def main() -> None:
    parser: dict[str, bytes] = {}
    for ident, data, _ in PARSER_VALID:
        parser[_name("valid-", ident)] = data
    for ident, data in PARSER_INVALID:
        parser[_name("invalid-", ident)] = data
    parser["valid-all"] = b"".join(v[1] for v in PARSER_VALID)
    # PubAcks on fuzz_parser's inbox, for the parser that reads them in bulk.
    parser["valid-replies-on-the-inbox"] = (
        b'MSG _INBOX.f.7 1 27\r\n{"stream":"s$1","seq":0001}\r\n'
        b'MSG _INBOX.f.8 1 27\r\n{"stream":"s$1","seq":0002}\r\nPING\r\n'
        b"MSG _INBOX.f.9 1 3\r\nabc\r\nHMSG _INBOX.f.10 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        b"MSG _INBOX.f.011 1 1\r\nx\r\n"
    )
    headers: dict[str, bytes] = {}
    for ident, block, *_ in HEADER_VALID:
        headers[_name("valid-", ident)] = block
    for ident, block in HEADER_INVALID:
        headers[_name("invalid-", ident)] = block
    _write(HERE / "corpus" / "parser", parser)
    _write(HERE / "corpus" / "headers", headers)
    print(f"wrote {len(parser)} parser and {len(headers)} headers seeds")


if __name__ == "__main__":
    main()
