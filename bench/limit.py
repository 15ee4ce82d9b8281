"""The "limit" client of the benchmarks: thin loops over one blocking stdlib socket.

It is the yardstick the other clients are compared with: what one Python process can get through
this broker at all. It has no library, no parser beyond framing, no bookkeeping: every byte it
sends is encoded once, before the clock starts, and it reads replies by counting ``MSG`` /
``HMSG`` frames and skipping their payloads by length (answering server ``PING``\\s).

It puts the same bytes on the wire as our producer for the same message (docs/broker.md; the
header block is the one ``memphis_core`` builds): ``HPUB <station>$1.final <reply> ...`` with a
``NATS/1.0`` block of ``$memphis_connectionId`` and ``$memphis_producedBy``, the payload, and a
reply subject on one wildcard inbox (``_INBOX.<32 hex>.<token>``). Consuming, it pulls with
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`` (body ``{"batch":N,"expires":ns}``) into an
inbox of its own and acks each message with ``PUB <ack subject> 4`` / ``+ACK``, one buffer per
batch.

Nothing here registers a producer or consumer with the control plane: the stations and consumer
groups are made by the benchmark with ``memphis_sync`` beforehand, and these loops only use the
stream and the durable behind them.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Final

#: Async produce: HPUBs written as one buffer before their PubAcks are read.
WINDOW: Final = 1000
#: Pull expiry, as our consumer's default ``batch_max_wait_time`` (5 s), in nanoseconds.
PULL_EXPIRES_NS: Final = 5_000_000_000
#: A fixed connection id for the produce headers: the same length as a real one (a UUID).
CONNECTION_ID: Final = "00000000-0000-4000-8000-000000000000"
_RECV: Final = 1 << 20
_CRLF: Final = b"\r\n"


class LimitError(RuntimeError):
    """The server said ``-ERR``, refused a publish, or closed the connection."""


class Wire:
    """One NATS connection: handshake, raw writes, and frame counting on reads."""

    def __init__(self, host: str, port: int, token: str, *, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.inbox = f"_INBOX.{uuid.uuid4().hex}"
        line = self._line()
        if not line.startswith(b"INFO "):
            raise LimitError(f"expected INFO, got {line[:80]!r}")
        connect = {
            "verbose": False,
            "pedantic": False,
            "auth_token": token,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "lang": "python-limit",
            "version": "0",
        }
        self.sock.sendall(b"CONNECT %b\r\nPING\r\n" % json.dumps(connect).encode())
        while True:
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise LimitError(line.decode(errors="replace"))
            # +OK / INFO updates / PING before our PONG: nothing to do for the handshake.
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _fill(self) -> None:
        if self.pos:
            del self.buf[: self.pos]  # CPython moves the start pointer: no copy of the rest
            self.pos = 0
        chunk = self.sock.recv(_RECV)
        if not chunk:
            raise LimitError("the server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while (eol := self.buf.find(_CRLF, self.pos)) < 0:
            self._fill()
        line = bytes(self.buf[self.pos : eol])
        self.pos = eol + 2
        return line

    def frames(self, count: int, on_frame: Callable[[bytes, int, int], bool] | None) -> int:
        """Read ``count`` MSG/HMSG frames (fewer when ``on_frame`` returns False: a pull ended).

        ``on_frame(control_line, payload_start, payload_end)`` sees each frame's control line
        and where its payload sits in ``self.buf`` (valid only during the call). Returns how
        many frames were counted.
        """
        got = 0
        buf = self.buf
        while got < count:
            eol = buf.find(_CRLF, self.pos)
            if eol < 0:
                self._fill()
                buf = self.buf
                continue
            start = self.pos
            if buf.startswith((b"MSG ", b"HMSG"), start):
                # The size is the last field of the control line (HMSG: the total size).
                size = int(buf[buf.rfind(b" ", start, eol) + 1 : eol])
                end = eol + 2 + size
                if end + 2 > len(buf):
                    self._fill()
                    buf = self.buf
                    continue
                if on_frame is not None and not on_frame(bytes(buf[start:eol]), eol + 2, end):
                    self.pos = end + 2
                    return got
                self.pos = end + 2
                got += 1
                continue
            line = bytes(buf[start:eol])
            self.pos = eol + 2
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise LimitError(line.decode(errors="replace"))
            # PONG, +OK, INFO: nothing to count.
        return got


def _produce_frame(subject: str, reply: str, header_block: bytes, payload: bytes) -> bytes:
    hdr = len(header_block)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (
        subject.encode(),
        reply.encode(),
        hdr,
        hdr + len(payload),
        header_block,
        payload,
    )


def header_block(producer_name: str, connection_id: str = CONNECTION_ID) -> bytes:
    """The ``NATS/1.0`` block our producer sends with every message (no msg id, no user
    headers)."""
    return b"NATS/1.0\r\n$memphis_connectionId: %b\r\n$memphis_producedBy: %b\r\n\r\n" % (
        connection_id.encode(),
        producer_name.encode(),
    )


class _PubAcks:
    """Frame callback of the produce loops: a PubAck must not carry an error."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def __call__(self, line: bytes, start: int, end: int) -> bool:
        # A PubAck is a plain MSG; an HMSG on the inbox is a status (503: no stream).
        if line[:4] == b"HMSG" or self.wire.buf.find(b'"error"', start, end) >= 0:
            raise LimitError(
                f"publish refused: {bytes(self.wire.buf[start:end])[:200].decode(errors='replace')}"
            )
        return True


def connect(host: str, port: int, token: str) -> Wire:
    """A handshaken connection (INFO, CONNECT with ``auth_token`` and headers, PING/PONG)."""
    return Wire(host, port, token)


def subscribe_inbox(wire: Wire) -> None:
    """SUB to the wildcard reply inbox (sid 1), confirmed by a PING/PONG."""
    wire.sock.sendall(b"SUB %b.* 1\r\nPING\r\n" % wire.inbox.encode())
    while wire._line() != b"PONG":
        pass


def sync_produce(
    wire: Wire,
    subject: str,
    payload: bytes,
    n: int,
    producer_name: str = "bench-producer",
    on_ack: Callable[[int], None] | None = None,
) -> None:
    """``n`` times: one HPUB, then wait for its PubAck. ``on_ack(t0_ns)`` after each (latency)."""
    frame = _produce_frame(subject, f"{wire.inbox}.10000", header_block(producer_name), payload)
    send = wire.sock.sendall
    frames = wire.frames
    check = _PubAcks(wire)
    if on_ack is None:
        for _ in range(n):
            send(frame)
            frames(1, check)
        return
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        send(frame)
        frames(1, check)
        on_ack(t0)


def async_produce(
    wire: Wire, subject: str, payload: bytes, n: int, producer_name: str = "bench-producer"
) -> None:
    """Windows of ``WINDOW`` HPUBs written as one buffer, then their PubAcks read."""
    block = header_block(producer_name)
    window = b"".join(
        _produce_frame(subject, f"{wire.inbox}.{10000 + i}", block, payload) for i in range(WINDOW)
    )
    send = wire.sock.sendall
    frames = wire.frames
    check = _PubAcks(wire)
    left = n
    while left >= WINDOW:
        send(window)
        frames(WINDOW, check)
        left -= WINDOW
    if left:
        send(window[: _frame_offset(window, left)])
        frames(left, check)


def _frame_offset(window: bytes, count: int) -> int:
    """Byte offset of the end of the first ``count`` frames of ``window`` (all one size)."""
    return len(window) // WINDOW * count


class _Pull:
    """Frame callback of the fetch loop: collect ack subjects, stop at a pull-ending status."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.ended = False

    def __call__(self, line: bytes, start: int, end: int) -> bool:
        parts = line.split(b" ")
        # HMSG <subject> <sid> <reply> <hdr> <total>: a message; without a reply: a status.
        if len(parts) == 6 or (len(parts) == 5 and parts[0] == b"MSG"):
            self.replies.append(parts[3])
            return True
        self.ended = True  # 404 / 408 / 409: the pull is over
        return False


def fetch_ack(wire: Wire, stream: str, durable: str, batch: int, n: int) -> int:
    """Pull ``batch`` at a time and ack each batch in one buffer until ``n`` are acked.

    Returns how many messages were acked (``n``, unless the durable ran dry: then fewer).
    """
    # One token deeper than the wildcard inbox (as our client does), so `<inbox>.*` (sid 1)
    # does not match it and deliver every message twice.
    pull_inbox = f"{wire.inbox}.p.1"
    wire.sock.sendall(b"SUB %b 2\r\n" % pull_inbox.encode())

    def request(size: int) -> bytes:
        body = b'{"batch":%d,"expires":%d}' % (size, PULL_EXPIRES_NS)
        return b"PUB $JS.API.CONSUMER.MSG.NEXT.%b.%b %b %d\r\n%b\r\n" % (
            stream.encode(),
            durable.encode(),
            pull_inbox.encode(),
            len(body),
            body,
        )

    full = request(batch)
    send = wire.sock.sendall
    frames = wire.frames
    acked = 0
    dry = 0
    while acked < n:
        want = min(batch, n - acked)
        pull = _Pull()
        # Never ask for more than is left: the pull would wait out its expiry for the rest.
        send(full if want == batch else request(want))
        frames(want, pull)
        if pull.replies:
            send(b"".join([b"PUB %b 4\r\n+ACK\r\n" % reply for reply in pull.replies]))
            acked += len(pull.replies)
            dry = 0
        elif pull.ended:
            dry += 1
            if dry >= 3:
                break
    return acked
