"""What the session writes: CONNECT options and PUB/HPUB encoding with the max_payload check.

Kept apart from ``_session.py`` so the state machine reads as state transitions; everything here
is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _commands as cmd
from ._errors import LocalProtocolError
from ._headers import Headers, encode_header_block
from ._version import __version__

__all__ = ["HeadersLike", "connect_options", "encode_publish", "encode_request"]

# bytes = an already encoded ``NATS/1.0`` block (the producer hot path builds its own).
HeadersLike = Headers | Mapping[str, str] | bytes
Payload = bytes | bytearray | memoryview


def connect_options(
    *, name: str, tls: bool, token: str | None, user: str | None, password: str | None
) -> dict[str, object]:
    """The CONNECT JSON (docs.nats.io, Client Protocol; memphis-client-protocol section 1.3).

    ``headers`` and ``no_responders`` are always on: Memphis needs headers, and a 503 is how a
    request to a subject nobody serves fails fast instead of timing out.
    """
    options: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "tls_required": tls,
        "name": name,
        "lang": "python",
        "version": __version__,
        "protocol": 1,
        "echo": True,
        "headers": True,
        "no_responders": True,
    }
    if token is not None:
        options["auth_token"] = token
    else:
        options["user"] = user
        options["pass"] = password
    return options


def _too_large(size: int, max_payload: int) -> LocalProtocolError:
    return LocalProtocolError(
        f"message of {size} bytes exceeds the server's max_payload of {max_payload}"
    )


def encode_request(
    subject: str, payload: Payload, headers: HeadersLike | None, reply: bytes, max_payload: int
) -> bytes:
    """PUB/HPUB with one of our own reply subjects: the hot path of every produce.

    The reply is built from our validated inbox prefix, so only the subject is checked (once
    per distinct subject, cached by ``subject_bytes``).

    Raises:
        LocalProtocolError: bad subject, headers or payload type, or larger than max_payload.
    """
    subj = cmd.subject_bytes(subject)
    if type(payload) is bytes:
        data = payload
    else:
        try:
            data = bytes(memoryview(payload))
        except TypeError:
            raise LocalProtocolError("payload must be bytes-like") from None
    if headers:
        block = headers if isinstance(headers, bytes) else encode_header_block(headers)
        hlen = len(block)
        size = hlen + len(data)
        if size > max_payload:
            raise _too_large(size, max_payload)
        return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subj, reply, hlen, size, block, data)
    size = len(data)
    if size > max_payload:
        raise _too_large(size, max_payload)
    return b"PUB %b %b %d\r\n%b\r\n" % (subj, reply, size, data)


def encode_publish(
    subject: str,
    payload: Payload,
    headers: HeadersLike | None,
    reply: str | None,
    max_payload: int,
) -> bytes:
    """PUB/HPUB for a user-chosen subject and optional reply.

    Raises:
        LocalProtocolError: bad subject, reply, headers or payload, or larger than max_payload.
    """
    if headers:
        block = headers if isinstance(headers, bytes) else encode_header_block(headers)
        size = len(block) + len(payload)
        data = cmd.encode_hpub(subject, block, payload, reply)
    else:
        size = len(payload)
        data = cmd.encode_pub(subject, payload, reply)
    if size > max_payload:
        raise _too_large(size, max_payload)
    return data
