"""Incremental parser for the server side of the NATS client protocol: bytes in, frames out.

Theory of operation
-------------------
The server sends CRLF-terminated control lines (NATS client protocol, "Protocol conventions")::

    INFO {json}                                      server description
    MSG <subject> <sid> [reply-to] <#bytes>          followed by <payload>\\r\\n
    HMSG <subject> <sid> [reply-to] <#hdr> <#total>  followed by <headers><payload>\\r\\n
    PING / PONG / +OK / -ERR <'message'>

Fields are separated by one or more spaces or tabs and op names are case-insensitive (both per
the protocol document). ``feed`` walks an immutable ``bytes`` buffer with an offset:
``find(b"\\n")`` (a one-byte search is a plain memchr, ~40% cheaper than searching for CRLF)
locates the line end, then ``split()`` cuts the fields and the first field picks the op. There
is no per-byte Python loop and no chain of regexes. An immutable buffer makes every payload and
field a single-copy slice (a bytearray slice would need a second copy to become ``bytes``).

Partial input is kept as ``_tail`` (the unparsed rest of the last buffer) plus ``_parts`` (chunks
received since, not yet joined). They are joined only when the join can make progress, which is
what keeps trickled input linear:

* an unterminated control line is re-examined only when a new chunk contains a LF (a CRLF cannot
  hide inside the old bytes: they were already searched), so a slowloris peer sending one byte
  at a time costs one memchr per byte, not a rescan of the line;
* a MSG/HMSG whose payload is incomplete keeps its parsed control line in ``_pending`` and the
  chunks are only counted until ``<#bytes> + 2`` have arrived: a 1 MiB payload in 4 KiB reads is
  copied twice in total, never re-parsed.

Limits (all raise ``RemoteProtocolError``): a control line longer than ``max_control_line``
(``max_info_line`` for INFO, which legitimately grows with the cluster's ``connect_urls``), a
payload over ``max_payload`` (the session sets it from INFO), a header block over
``max_header_size`` or larger than the total. So ``buffered`` never exceeds one maximal frame
plus one chunk.

Strictness, each against a bug seen in the wild (style-anchors section 1.7): the two bytes after
a payload must be CRLF; a control line must end in CRLF; a lone CR, LF, VT or FF inside a
control line is an error, never a field separator; sizes and sids are plain ASCII decimal (no
sign, no ``_``, no spaces: Python's ``int()`` would accept all three).

Errors poison the parser: the failing ``feed`` raises ``RemoteProtocolError`` and so does every
later call. Any other exception escaping ``feed`` is a bug (the fuzzers check this).
"""

from __future__ import annotations

import json
import re
from typing import Final

from ._errors import LocalProtocolError, RemoteProtocolError
from ._frames import OK_FRAME, PING_FRAME, PONG_FRAME, Err, Frame, Info, Msg
from ._headers import parse_status_line

__all__ = ["Parser"]

_MIN_LINE_LIMIT: Final = 16
_SID_CACHE_LIMIT: Final = 1024
# bytes.split() also splits on these; the protocol only allows SP and HT between fields.
# Field separators as nats-server and nats.go split arguments: SP, HT and CR (a LF always ends
# the line here). bytes.split() also splits on VT and FF, which those treat as token bytes.
_SEPARATORS: Final = b" \t\r"
_tokens: Final = re.compile(rb"[ \t\r]+").split
_op_and_rest: Final = re.compile(rb"[ \t\r]*([^ \t\r]*)[ \t\r]*(.*?)[ \t\r]*", re.DOTALL).fullmatch
_NO_STATUS_START: Final = b"NATS/1.0\r\n"  # a header block without a status line
# (subject, sid, reply, header size, total size) of a MSG/HMSG awaiting its payload.
_Pending = tuple[str, int, "str | None", int, int]


def _excerpt(data: bytes) -> str:
    return repr(data[:64]) + ("..." if len(data) > 64 else "")


def _split_exact(line: bytes) -> list[bytes]:
    # Slow path for buffers that contain VT or FF somewhere: split on the protocol's separators
    # only, so that such bytes stay inside the subject like nats-server delivered them.
    return _tokens(line.strip(_SEPARATORS))


def _text(data: bytes) -> str:
    # Subjects are not guaranteed UTF-8 (the server only excludes whitespace), and any
    # publisher could send us such a subject: keep the bytes instead of failing the connection.
    return data.decode("utf-8", "surrogateescape")


def _malformed(op: str, line: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed {op} line {_excerpt(line)}")


class Parser:
    """Turn bytes from a NATS server into ``Frame`` objects.

    Args:
        max_control_line: longest accepted control line, CRLF excluded (the server default).
        max_payload: largest accepted MSG/HMSG size (headers included); set it from INFO.
        max_header_size: largest accepted HMSG header block.
        max_info_line: longest accepted INFO line (INFO grows with the cluster).

    Raises:
        LocalProtocolError: for a limit that is not an int (line limits: at least 16).
    """

    __slots__ = (
        "_error",
        "_max_payload",
        "_parts",
        "_pending",
        "_sids",
        "_size",
        "_tail",
        "max_control_line",
        "max_header_size",
        "max_info_line",
    )

    def __init__(
        self,
        *,
        max_control_line: int = 4096,
        max_payload: int = 1_048_576,
        max_header_size: int = 65_536,
        max_info_line: int = 65_536,
    ) -> None:
        for name, value in (
            ("max_control_line", max_control_line),
            ("max_header_size", max_header_size),
            ("max_info_line", max_info_line),
        ):
            if type(value) is not int or value < _MIN_LINE_LIMIT:
                raise LocalProtocolError(f"{name} must be an int >= {_MIN_LINE_LIMIT}")
        self.max_control_line = max_control_line
        self.max_header_size = max_header_size
        self.max_info_line = max(max_info_line, max_control_line)
        self._max_payload = 0
        self.max_payload = max_payload
        self._tail = b""
        self._parts: list[bytes] = []
        self._size = 0
        self._pending: _Pending | None = None
        self._error: RemoteProtocolError | None = None
        self._sids: dict[bytes, int] = {}

    @property
    def max_payload(self) -> int:
        """Largest accepted MSG/HMSG total size; the session copies INFO's ``max_payload``."""
        return self._max_payload

    @max_payload.setter
    def max_payload(self, value: int) -> None:
        if type(value) is not int or value < 0:
            raise LocalProtocolError("max_payload must be a non-negative int")
        self._max_payload = value

    @property
    def buffered(self) -> int:
        """Number of received bytes held back as (the start of) an incomplete frame."""
        return self._size

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Append ``data`` and return every frame it completes, in order.

        Incomplete trailing bytes stay buffered for the next call. ``b""`` is allowed (returns
        ``[]``); end-of-stream handling belongs to the caller (check ``buffered``).

        Raises:
            RemoteProtocolError: the server broke the protocol or a limit. The parser is then
                poisoned: this and every later call raise. No other exception escapes.
        """
        if self._error is not None:
            raise RemoteProtocolError(f"parser failed earlier: {self._error}") from self._error
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if not self._size and self._pending is None:
                return self._parse(data, 0, 0)
            return self._resume(data)
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        except Exception as exc:  # pragma: no cover - defensive: the contract is RPE only
            error = RemoteProtocolError(f"unexpected parse failure: {exc!r}")
            self._error = error
            raise error from exc

    def _resume(self, data: bytes) -> list[Frame]:
        # Something is buffered. Only the frame that straddles the boundary is joined, and only
        # once the new data can complete it (its payload is complete, or a LF arrived); the rest
        # of ``data`` is parsed in place, so a 64 KiB read is never copied as a whole.
        old = self._size
        size = old + len(data)
        pending = self._pending
        if pending is not None:
            need = pending[4] + 2
            if size < need:
                self._parts.append(data)
                self._size = size
                return []
            cut = need - old  # data[:cut] completes the pending payload
        else:
            lf = data.find(b"\n")
            if lf < 0:  # the line is still unterminated: no CRLF can hide in what we hold
                self._parts.append(data)
                self._size = size
                if size > self.max_control_line:
                    self._check_unterminated()
                return []
            cut = lf + 1  # data[:cut] completes the control line
        self._parts.append(data[:cut])
        head = b"".join((self._tail, *self._parts))
        self._parts.clear()
        frames = self._parse(head, 0, old)
        # ``head`` ends exactly where a frame or a control line ends. For a MSG line the payload
        # is still ahead: ``_pending`` carries it into the in-place parse of the rest.
        frames += self._parse(data, cut, cut)
        return frames

    def _new_sid(self, sid_b: bytes, line: bytes) -> int:
        # The server echoes the sids we chose, so a handful of values repeat forever: caching
        # bytes -> int skips isdigit() + int() per message. Bounded against a hostile server.
        if not sid_b.isdigit():
            raise _malformed(line[:4].decode("ascii", "replace").rstrip(), line)
        sids = self._sids
        last_sid_b = b""
        last_sid = 0
        if len(sids) >= _SID_CACHE_LIMIT:
            sids.clear()
        sid = sids[sid_b] = int(sid_b)
        return sid

    def _check_unterminated(self) -> None:
        # The buffered line has no LF yet and is over max_control_line: only an INFO line may
        # be (up to max_info_line). Rare, so joining here is fine.
        if self._parts:
            self._tail = b"".join((self._tail, *self._parts))
            self._parts.clear()
        tail = self._tail
        # A trailing CR may be the first half of the CRLF: it is not line content.
        length = len(tail) - 1 if tail.endswith(b"\r") else len(tail)
        self._check_line_length(tail, 0, length)

    def _check_line_length(self, buf: bytes, pos: int, length: int) -> None:
        if length <= self.max_control_line:
            return
        if length <= self.max_info_line and buf[pos : pos + 4].upper() == b"INFO":
            return
        raise RemoteProtocolError(
            f"control line longer than the limit ({length} bytes): {_excerpt(buf[pos:])}"
        )

    # The hot loop. Everything per-message lives in this one function with bound-method locals:
    # a call per frame would cost more than the parsing itself.
    def _parse(self, buf: bytes, pos: int, scan: int) -> list[Frame]:
        """Parse buf[pos:] (searching for the first LF from ``scan``); keep the rest."""
        frames: list[Frame] = []
        append = frames.append
        find = buf.find
        n = len(buf)
        max_payload = self._max_payload
        max_line = self.max_control_line
        max_header = self.max_header_size
        sids = self._sids

        pending = self._pending
        if pending is not None:
            # The control line was parsed earlier; the payload starts at ``pos``.
            total = pending[4]
            if n - pos < total + 2:
                self._tail = tail = buf[pos:]
                self._size = len(tail)
                return frames
            end = pos + total
            if buf[end] != 13 or buf[end + 1] != 10:
                raise RemoteProtocolError("message payload is not followed by CRLF")
            self._pending = None
            append(self._message(buf, pos, *pending))
            pos = scan = end + 2

        # Every frame ends in LF, so buf[pos - 1] is a LF whenever pos > 0: the CR test below
        # also rejects an empty line there. Only an empty line at offset 0 needs its own test.
        if not pos and buf[:1] == b"\n":
            raise RemoteProtocolError("empty control line")
        # Two memchr passes over the whole buffer (~1 us per 64 KiB) buy the right to use the
        # C-speed bytes.split() on every line: see _SEPARATORS.
        clean = find(b"\x0b", pos) < 0 and find(b"\x0c", pos) < 0
        eol = find(b"\n", scan)
        while eol >= 0:
            le = eol - 1  # the CR; the line is buf[pos:le]
            if buf[le] != 13 or le - pos > max_line:
                if buf[le] != 13:
                    raise RemoteProtocolError(
                        f"control line not terminated by CRLF: {_excerpt(buf[pos:eol + 1])}"
                    )
                self._check_line_length(buf, pos, le - pos)
            line = buf[pos:le]
            args = line.split() if clean else _split_exact(line)
            try:
                op = args[0]
            except IndexError:  # a blank line (zero-cost try: the common case pays nothing)
                raise RemoteProtocolError("empty control line") from None

            if op != b"HMSG" and op != b"MSG":  # noqa: PLR1714 - HMSG first: Memphis sends HMSG
                # Ops are case-insensitive; everything but MSG/HMSG is rare.
                op = op.upper()
                if op != b"HMSG" and op != b"MSG":  # noqa: PLR1714
                    append(self._other(line))
                    pos = eol + 1
                    eol = find(b"\n", pos)
                    continue

            if op == b"HMSG":  # HMSG <subject> <sid> [reply-to] <#hdr bytes> <#total bytes>
                if len(args) == 6:
                    _, subj_b, sid_b, reply_b, hsize_b, size_b = args
                    try:
                        reply = reply_b.decode()
                    except UnicodeDecodeError:
                        reply = _text(reply_b)
                elif len(args) == 5:
                    _, subj_b, sid_b, hsize_b, size_b = args
                    reply = None
                else:
                    raise _malformed("HMSG", line)
                # Consecutive messages mostly share a subscription (a pull batch): compare
                # with the previous sid before paying for a dict lookup.
                if sid_b != last_sid_b:
                    last_sid = sids.get(sid_b)
                    if last_sid is None:
                        last_sid = self._new_sid(sid_b, line)
                    last_sid_b = sid_b
                if not (size_b.isdigit() and hsize_b.isdigit()):
                    raise _malformed("HMSG", line)
                size = int(size_b)
                hsize = int(hsize_b)
                if size > max_payload:
                    raise RemoteProtocolError(
                        f"HMSG of {size} bytes exceeds max_payload {max_payload}"
                    )
                if hsize > size or hsize > max_header:
                    raise RemoteProtocolError(
                        f"HMSG header size {hsize} exceeds the total {size} or "
                        f"max_header_size {max_header}"
                    )
                try:
                    subject = subj_b.decode()
                except UnicodeDecodeError:
                    subject = _text(subj_b)
                start = eol + 1
                end = start + size
                if end + 2 > n:
                    self._pending = (subject, last_sid, reply, hsize, size)
                    pos = start
                    break
                if buf[end] != 13 or buf[end + 1] != 10:
                    raise RemoteProtocolError("message payload is not followed by CRLF")
                hend = start + hsize
                raw = buf[start:hend]
                # The status line is checked now (the session dispatches on it, and an error
                # must poison the parser); the header lines and the block terminator when
                # Msg.headers decodes them. User headers (no status) cost one prefix test.
                if raw.startswith(_NO_STATUS_START):
                    append(Msg(subject, last_sid, reply, buf[hend:end], None, None, "", raw))
                else:
                    status, description = parse_status_line(raw)
                    append(
                        Msg(subject, last_sid, reply, buf[hend:end], None, status,
                            description, raw)
                    )
                pos = end + 2
                eol = find(b"\n", pos)
                continue

            # MSG <subject> <sid> [reply-to] <#bytes>
            if len(args) == 5:
                _, subj_b, sid_b, reply_b, size_b = args
                try:
                    reply = reply_b.decode()
                except UnicodeDecodeError:
                    reply = _text(reply_b)
            elif len(args) == 4:
                _, subj_b, sid_b, size_b = args
                reply = None
            else:
                raise _malformed("MSG", line)
            if sid_b != last_sid_b:
                last_sid = sids.get(sid_b)
                if last_sid is None:
                    last_sid = self._new_sid(sid_b, line)
                last_sid_b = sid_b
            if not size_b.isdigit():
                raise _malformed("MSG", line)
            size = int(size_b)
            if size > max_payload:
                raise RemoteProtocolError(
                    f"MSG payload of {size} bytes exceeds max_payload {max_payload}"
                )
            try:
                subject = subj_b.decode()
            except UnicodeDecodeError:
                subject = _text(subj_b)
            start = eol + 1
            end = start + size
            if end + 2 > n:
                self._pending = (subject, last_sid, reply, 0, size)
                pos = start
                break
            if buf[end] != 13 or buf[end + 1] != 10:
                raise RemoteProtocolError("message payload is not followed by CRLF")
            append(Msg(subject, last_sid, reply, buf[start:end]))
            pos = end + 2
            eol = find(b"\n", pos)
        else:
            # No complete line left: bound the unterminated rest.
            rest = n - pos
            if rest > max_line:
                length = rest - 1 if buf[n - 1] == 13 else rest
                self._check_line_length(buf, pos, length)

        self._tail = tail = buf[pos:] if pos else buf
        self._size = len(tail)
        return frames

    @staticmethod
    def _message(
        buf: bytes,
        start: int,
        subject: str,
        sid: int,
        reply: str | None,
        hsize: int,
        total: int,
    ) -> Msg:
        """Build the Msg whose payload (header block first, if any) is buf[start:start+total]."""
        end = start + total
        if not hsize:
            return Msg(subject, sid, reply, buf[start:end])
        hend = start + hsize
        raw = buf[start:hend]
        if raw.startswith(_NO_STATUS_START):
            return Msg(subject, sid, reply, buf[hend:end], None, None, "", raw)
        status, description = parse_status_line(raw)
        return Msg(subject, sid, reply, buf[hend:end], None, status, description, raw)

    @staticmethod
    def _other(line: bytes) -> Frame:
        """Parse the rare ops: PING, PONG, INFO, +OK, -ERR (anything else is an error)."""
        match = _op_and_rest(line)
        if match is None:  # pragma: no cover - the pattern matches every line
            raise RemoteProtocolError(f"unknown protocol line {_excerpt(line)}")
        op, rest = match.groups()
        op = op.upper()
        if op == b"PING" or op == b"PONG" or op == b"+OK":  # noqa: PLR1714 - clearer here
            if rest:  # these take no arguments
                raise RemoteProtocolError(f"malformed {op.decode()} line {_excerpt(line)}")
            return PING_FRAME if op == b"PING" else PONG_FRAME if op == b"PONG" else OK_FRAME
        if op == b"-ERR":
            # nats-server quotes the text: -ERR 'Authorization Violation'
            if len(rest) >= 2 and rest[:1] == b"'" and rest[-1:] == b"'":
                rest = rest[1:-1]
            return Err(rest.decode("utf-8", "surrogateescape"))
        if op == b"INFO":
            try:
                fields = json.loads(rest)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
                raise RemoteProtocolError(f"INFO is not valid JSON: {exc}") from None
            if not isinstance(fields, dict):
                raise RemoteProtocolError("INFO payload is not a JSON object")
            return Info(fields)
        raise RemoteProtocolError(f"unknown protocol line {_excerpt(line)}")
