"""NATS message headers: the ``Headers`` collection and the ``NATS/1.0`` header block.

A header block (NATS client protocol, "HPUB"/"HMSG") looks like an HTTP/1 header section with a
NATS version line in place of the request line::

    NATS/1.0[ <3-digit status>[ <description>]]\\r\\n
    Key: value\\r\\n
    ...
    \\r\\n

The server uses the status form for its own control messages: ``100 Idle Heartbeat`` and flow
control, ``404 No Messages``, ``408 Request Timeout``, ``409 ...`` (JetStream pull requests) and
``503`` (no responders for a request).

Keys keep their case and lookups are case-sensitive: nats.go never canonicalises keys
(docs/protocol.md §6.5), and prefix filters on keys rely on that. A key may appear several
times; order is kept.

Text is decoded as UTF-8 with ``surrogateescape``: any other publisher on a subject we listen to
can put arbitrary bytes in a header, and that must neither poison our connection nor lose bytes
(``encode_header_block`` re-encodes the same way, so a received block round-trips exactly).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "HEADER_VERSION_LINE",
    "Headers",
    "encode_header_block",
    "parse_header_block",
    "parse_status_line",
]

HEADER_VERSION_LINE: Final = b"NATS/1.0"
_VERSION_STR: Final = "NATS/1.0"
# The smallest legal block is 12 bytes (version line plus the blank line): the ``len < 12`` tests
# below reject anything shorter before indexing into it.
_EMPTY_BLOCK: Final = b"NATS/1.0\r\n\r\n"

# A key is one non-empty run of bytes with no ':' (the separator), no whitespace and no control
# characters: that is what nats.go's MIME reader accepts as a field name, minus the obsolete
# forms (leading whitespace = line folding) that no NATS client emits.
_BAD_KEY: Final = re.compile(r"[\x00-\x20\x7f:]").search
# A value may hold anything but a line break (it would end the line and smuggle in a header).
_BAD_VALUE: Final = re.compile(r"[\r\n]").search

_Pairs = Mapping[str, str] | Iterable[tuple[str, str]]


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise LocalProtocolError(f"header key must be str, not {type(key).__name__}")
    if not key or _BAD_KEY(key) is not None:
        raise LocalProtocolError(f"invalid header key {key!r}")
    return key


def _check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"header {key!r}: value must be str, not {type(value).__name__}")
    if _BAD_VALUE(value) is not None:
        raise LocalProtocolError(f"header {key!r}: value must not contain CR or LF")
    return value


class Headers:
    """A multi-valued, case-preserving, insertion-ordered header collection.

    ``Headers()``, ``Headers({"k": "v"})`` or ``Headers([("k", "v"), ("k", "w")])``.
    Lookups are case-sensitive. Iteration yields each distinct key once, in first-seen order;
    ``items()`` yields every ``(key, value)`` pair including repeats.

    Raises:
        LocalProtocolError: on construction or ``add`` with an invalid key (empty, or containing
            ``:``, whitespace or control characters) or a value containing CR or LF, or a
            non-``str`` key or value.
    """

    # Every pair in order, plus key -> first value. Header sets are small (a handful of keys),
    # so ``get_all`` scans the list; building per-key lists for every received message would
    # cost more than all the lookups a message ever gets.
    __slots__ = ("_first", "_items")

    def __init__(self, initial: _Pairs | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}
        if initial is not None:
            pairs: Iterable[tuple[str, str]]
            # Copying from another ``Headers`` re-validates nothing: its pairs were checked when
            # added.
            if isinstance(initial, Headers):
                pairs = initial._items
            elif isinstance(initial, Mapping):
                pairs = initial.items()
            else:
                pairs = initial
            add = self.add
            for key, value in pairs:
                add(key, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        # Fast path for the parser: the pairs were validated while parsing.
        # ``cls()``, not ``cls.__new__(cls)``: mypyc compiles no call of ``__new__`` on its
        # classes (docs/compiled.md). The empty list and dict ``__init__`` makes are replaced below.
        self = cls()
        self._items = items
        first = dict(items)  # C speed; keeps the *last* value of a repeated key...
        if len(first) != len(items):
            first = {}  # ...so rebuild in that (rare) case
            for key, value in items:
                first.setdefault(key, value)
        self._first = first
        return self

    def add(self, key: str, value: str) -> None:
        """Append a value for ``key`` (existing values are kept).

        Raises:
            LocalProtocolError: if the key or value is invalid (see the class docstring).
        """
        _check_key(key)
        _check_value(key, value)
        self._items.append((key, value))
        # ``setdefault``: the first value wins for ``[]`` and ``get``, as in nats.go's
        # ``Header.Get`` (docs/protocol.md §7.14).
        self._first.setdefault(key, value)

    def __getitem__(self, key: str) -> str:
        """Return the first value of ``key``.

        Raises:
            KeyError: if ``key`` is absent.
        """
        return self._first[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the first value of ``key``, or ``default``."""
        return self._first.get(key, default)

    def get_all(self, key: str) -> list[str]:
        """Return every value of ``key`` in order (an empty list if absent)."""
        return [v for k, v in self._items if k == key]

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        """Number of distinct keys."""
        return len(self._first)

    def items(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` pair in insertion order, repeats included (a new list)."""
        return list(self._items)

    def copy(self) -> Headers:
        """A shallow copy (changes to the copy do not affect this object)."""
        return Headers._trusted(list(self._items))

    def _grouped(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key, value in self._items:
            grouped.setdefault(key, []).append(value)
        return grouped

    def __eq__(self, other: object) -> bool:
        # Equal when every key has the same values in the same order; the relative order of
        # *different* keys carries no meaning in NATS (nats.go even sorts them on send).
        if isinstance(other, Headers):
            if len(self._items) != len(other._items):
                return False
            return self._grouped() == other._grouped()
        if isinstance(other, Mapping):
            return self._grouped() == {k: [v] for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def encode_header_block(
    headers: Headers | Mapping[str, str] | None,
    *,
    status: int | None = None,
    description: str = "",
) -> bytes:
    """Encode ``headers`` as a ``NATS/1.0`` header block, terminating blank line included.

    ``status``/``description`` write a status line (``NATS/1.0 503 No Responders``); clients
    never need them, the broker and the tests do.

    Raises:
        LocalProtocolError: for an invalid key, value, status (not 100..999) or description
            (CR/LF), or a key or value that cannot be encoded.
    """
    if status is None:
        if description:
            raise LocalProtocolError("a header description needs a status")
        parts = [_VERSION_STR, "\r\n"]
    else:
        if type(status) is not int or not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid header status {status!r}")
        _check_value("status description", description)
        if description:
            parts = [_VERSION_STR, f" {status} {description}\r\n"]
        else:
            parts = [_VERSION_STR, f" {status}\r\n"]
    if headers is not None:
        pairs = headers._items if isinstance(headers, Headers) else headers.items()
        # A ``Headers`` validated its pairs on ``add``; a plain mapping from the user has not, and a
        # CR or LF in it would let a value smuggle a header line into the block.
        trusted = isinstance(headers, Headers)
        for key, value in pairs:
            if not trusted:
                _check_key(key)
                _check_value(key, value)
            parts += (key, ": ", value, "\r\n")
    parts.append("\r\n")
    try:
        return "".join(parts).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:  # a lone surrogate outside the escape range
        raise LocalProtocolError(f"header text cannot be encoded: {exc}") from None


def _parse_status(line: str) -> tuple[int | None, str]:
    # `line` is the first line minus "NATS/1.0". nats.go reads the status as the 3 characters
    # after the version and the rest (trimmed) as the description. (Never empty: the caller
    # handles "NATS/1.0" directly followed by CRLF.)
    # ``NATS/1.0503`` is not a status: a separator is required, as nats.go requires one.
    if line[0] not in " \t" or "\r" in line or "\n" in line:
        raise RemoteProtocolError(f"malformed header version line {_VERSION_STR + line!r}")
    rest = line.strip(" \t")
    code = rest[:3]
    tail = rest[3:]
    if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] == "0":
        raise RemoteProtocolError(f"malformed header status {rest!r}")
    if tail and tail[0] not in " \t":
        raise RemoteProtocolError(f"malformed header status {rest!r}")
    return int(code), tail.strip(" \t")


def parse_status_line(block: bytes) -> tuple[int | None, str]:
    """Validate the framing of a header block and return its ``(status, description)``.

    Cheap: only the first line is decoded. The parser calls this for every HMSG so that framing
    and status errors surface from ``Parser.feed`` while the header lines are decoded lazily.

    Raises:
        RemoteProtocolError: if the block does not start with ``NATS/1.0``, does not end with an
            empty line, or has a malformed status line.
    """
    if block[:8] != HEADER_VERSION_LINE or block[-4:] != b"\r\n\r\n" or len(block) < 12:
        raise RemoteProtocolError("malformed header block: bad version line or terminator")
    # Status lines are parsed eagerly because the session dispatches on them (503, 404, 408, 409,
    # 100, docs/protocol.md §6.7, §7.6), while user headers wait until someone reads them.
    if block[8:10] == b"\r\n":  # the common case: user headers, no status
        return None, ""
    eol = block.find(b"\r\n", 8)
    return _parse_status(block[8:eol].decode("utf-8", "surrogateescape"))


def parse_header_block(block: bytes | bytearray | memoryview) -> tuple[int | None, str, Headers]:
    """Parse a ``NATS/1.0`` header block (as carried by HMSG) into status, description, headers.

    Values are stripped of surrounding spaces/tabs; keys are kept as sent.

    Raises:
        RemoteProtocolError: for any malformation (nothing else escapes).
    """
    # Any bytes-like block is accepted (tests/core/test_headers.py), and annotated so: compiled
    # with mypyc (docs/compiled.md), the annotation is checked at the call.
    data = bytes(block)
    status, description = parse_status_line(data)
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    # lines == [version line, *header lines, "", ""] (the block ends with CRLF CRLF). Counting
    # CRs and LFs once proves that no line holds a lone one: cheaper than a test per line.
    crlfs = len(lines) - 1
    if text.count("\r") != crlfs or text.count("\n") != crlfs:
        raise RemoteProtocolError(f"malformed header block (bare CR or LF): {data[:200]!r}")
    items: list[tuple[str, str]] = []
    append = items.append
    for line in lines[1:-2]:
        key, sep, value = line.partition(":")
        # Fast exact test for ASCII keys: printable, no space (so 0x21..0x7e), non-empty.
        if not (sep and key and key.isascii() and key.isprintable() and " " not in key) and (
            not sep or not key or _BAD_KEY(key) is not None
        ):
            raise RemoteProtocolError(f"malformed header line {line!r}")
        # Values are trimmed like MIME header values (nats.go uses a MIME reader), so ``k:  v`` and
        # ``k: v`` read the same; keys are not, since their case and bytes matter (§6.5).
        append((key, value.strip(" \t")))
    return status, description, Headers._trusted(items)
