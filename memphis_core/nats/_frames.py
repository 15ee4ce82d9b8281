"""NATS wire frames: what ``Parser.feed`` returns for each server operation.

These are internal, hot-path objects (one ``Msg`` per delivered message), so they are plain
slotted classes rather than frozen dataclasses: construction is about 4x cheaper (measured
with timeit on CPython 3.11), and at a million messages a second that is most of the
per-message budget. They still compare by value and have a useful ``repr`` for tests.
``Ping``, ``Pong`` and ``Ok`` carry no data; the parser hands out one shared instance of each
(``PING_FRAME`` ...).

A ``Msg`` made by the parser from an HMSG keeps the raw header block and decodes the header
lines on first access of ``headers`` (nats.py measured header decoding at ~40% of subscriber CPU;
messages that are only routed or counted never pay for it). The block's framing and its status
line are validated eagerly by the parser, so ``status`` and ``description`` are plain values.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from ._headers import Headers, encode_header_block, parse_header_block

__all__ = [
    "OK_FRAME",
    "PING_FRAME",
    "PONG_FRAME",
    "Err",
    "Frame",
    "Info",
    "Msg",
    "Ok",
    "Ping",
    "Pong",
    "Replies",
]


class Info:
    """``INFO {json}``: the server's description of itself (a JSON object, parsed)."""

    __slots__ = ("fields",)
    __match_args__: Final = ("fields",)

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        if type(other) is Info:
            return self.fields == other.fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Info({self.fields!r})"


class Msg:
    """``MSG``/``HMSG``: a message delivered to subscription ``sid``.

    ``reply`` is None when the server sent none. ``headers`` is None for a plain MSG and a
    ``Headers`` (possibly empty) for an HMSG; ``status``/``description`` come from the header
    block's status line (e.g. ``503``/``"No Responders"``, ``100``/``"Idle Heartbeat"``).

    ``raw_headers`` is the block as received: the parser passes it instead of ``headers``, and
    the header lines are decoded (and validated) on the first access of ``headers``. Pass one
    of the two. ``raw_headers`` (the property) stays byte-exact, e.g. for forwarding.

    Raises:
        RemoteProtocolError: from ``headers`` (first access) if a header line received from the
            server is malformed.
    """

    __slots__ = (
        "_headers",
        "_raw_headers",
        "description",
        "payload",
        "reply",
        "sid",
        "status",
        "subject",
    )
    __match_args__: Final = ("subject", "sid", "reply", "payload")

    def __init__(
        self,
        subject: str,
        sid: int,
        reply: str | None,
        payload: bytes,
        headers: Headers | None = None,
        status: int | None = None,
        description: str = "",
        raw_headers: bytes | None = None,
    ) -> None:
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.payload = payload
        self._headers = headers
        self._raw_headers = raw_headers
        self.status = status
        self.description = description

    @property
    def headers(self) -> Headers | None:
        headers = self._headers
        if headers is None and self._raw_headers is not None:
            # The status was taken from the block by the parser already; only the header lines
            # are new. A malformed line raises RemoteProtocolError here, to whoever reads the
            # headers, rather than in the parser.
            _, _, headers = parse_header_block(self._raw_headers)
            self._headers = headers  # raw is kept: raw_headers stays byte-exact
        return headers

    @headers.setter
    def headers(self, value: Headers | None) -> None:
        self._headers = value
        # Setting headers by hand invalidates the raw block, or ``raw_headers`` would describe other
        # headers than ``headers``.
        self._raw_headers = None

    @property
    def raw_headers(self) -> bytes | None:
        """The header block as received (None for MSG); re-encoded if built by hand."""
        if self._raw_headers is not None:
            return self._raw_headers
        if self._headers is None:
            return None
        # Re-encoding keeps the status line: a hand-built 503 must still read as a 503 when
        # forwarded.
        return encode_header_block(self._headers, status=self.status, description=self.description)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Msg:
            return NotImplemented
        return (
            self.subject == other.subject
            and self.sid == other.sid
            and self.reply == other.reply
            and self.payload == other.payload
            and self.status == other.status
            and self.description == other.description
            # Identical raw blocks are equal without decoding (which could raise).
            and (
                (self._raw_headers is not None and self._raw_headers == other._raw_headers)
                or self.headers == other.headers
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Never decodes (a repr must not raise): undecoded blocks are shown raw.
        extra = ""
        if self._headers is not None:
            extra = f", headers={self._headers!r}, status={self.status!r}"
        elif self._raw_headers is not None:
            extra = f", raw_headers={self._raw_headers!r}, status={self.status!r}"
        if extra and self.description:
            extra += f", description={self.description!r}"
        return f"Msg({self.subject!r}, {self.sid!r}, {self.reply!r}, {self.payload!r}{extra})"


# PING, PONG and +OK carry nothing: one shared instance each saves an allocation per frame, and
# equality by type keeps ``frame == Ping()`` working in tests.
class _Singleton:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Ping(_Singleton):
    """``PING``: the server checks we are alive; answer with ``PONG``."""

    __slots__ = ()


class Pong(_Singleton):
    """``PONG``: the answer to one of our ``PING``s (also ends the CONNECT handshake)."""

    __slots__ = ()


class Ok(_Singleton):
    """``+OK``: acknowledgement, only sent when CONNECT asked for ``verbose``."""

    __slots__ = ()


class Err:
    """``-ERR <message>``: a server error; ``message`` has its single quotes stripped."""

    __slots__ = ("message",)
    __match_args__: Final = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        if type(other) is Err:
            return self.message == other.message
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Err({self.message!r})"


class Replies:
    """Consecutive plain ``MSG``s on the shared reply inbox, recognised in one pass.

    Only a parser told the inbox (``Parser.expect_replies``) makes these: for each ``MSG
    <inbox prefix><token> <inbox sid> <#bytes>`` without headers it keeps the token (the
    subject's last token, as an int) and the payload, and no ``Msg``. A JetStream PubAck is
    such a reply, so a read full of them becomes one of these rather than one ``Msg`` each.
    """

    __slots__ = ("payloads", "tokens")

    def __init__(
        self, tokens: list[int] | None = None, payloads: list[bytes] | None = None
    ) -> None:
        self.tokens: list[int] = [] if tokens is None else tokens
        self.payloads: list[bytes] = [] if payloads is None else payloads

    def __eq__(self, other: object) -> bool:
        if type(other) is Replies:
            return self.tokens == other.tokens and self.payloads == other.payloads
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Replies({self.tokens!r}, {self.payloads!r})"


# The parser returns these shared instances; nothing may mutate them (they have no fields).
PING_FRAME: Final = Ping()
PONG_FRAME: Final = Pong()
OK_FRAME: Final = Ok()

Frame: TypeAlias = Info | Msg | Replies | Ping | Pong | Ok | Err
