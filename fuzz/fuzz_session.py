"""Atheris harness for the NATS session: arbitrary server bytes after a real handshake.

Invariant: ``receive_data`` never raises, whatever the server sends (a protocol violation
becomes a ``Disconnected`` event carrying ``RemoteProtocolError``), and feeding the same bytes
whole or byte by byte yields the same events and the same outgoing bytes.

Run: ``python fuzz/fuzz_session.py -max_total_time=60 fuzz/corpus/session``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from memphis_core import MemphisConnectError, RemoteProtocolError
    from memphis_core.nats._events import Disconnected
    from memphis_core.nats._session import Session

_HANDSHAKE = b'INFO {"server_id":"f","max_payload":4096,"headers":true}\r\nPONG\r\n'


def _session() -> Session:
    session = Session(
        token="t",
        inbox_prefix="_INBOX.f",
        ping_interval=0,
    )
    session.connection_made(0.0)
    session.receive_data(_HANDSHAKE, 0.0)
    session.subscribe("events.>")
    session.request("svc", b"q", now=0.0, timeout=5.0)
    session.request("pull", b"q", now=0.0, timeout=5.0, multi=True)
    session.data_to_send()
    session.events()
    return session


def _run(data: bytes, chunks: list[bytes]) -> tuple[list[object], bytes]:
    session = _session()
    for chunk in chunks:
        session.receive_data(chunk, 1.0)
    seen: list[object] = []
    for event in session.events():
        if isinstance(event, Disconnected):
            # A malformed stream is a RemoteProtocolError; a well-formed -ERR is the server's
            # own reason (MemphisConnectError). Nothing else may end the transport. Where the
            # bytes were cut may change the wording of a parse error, not its kind.
            assert isinstance(event.error, RemoteProtocolError | MemphisConnectError), event
            kind = type(event.error).__name__
            text = "" if isinstance(event.error, RemoteProtocolError) else str(event.error)
            seen.append(("Disconnected", kind, text, event.reconnect_at))
        else:
            seen.append(repr(event))
    return seen, session.data_to_send()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    whole = _run(data, [data])
    trickled = _run(data, [data[i : i + 1] for i in range(len(data))])
    assert whole == trickled, (data, whole, trickled)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
