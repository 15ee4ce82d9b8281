"""The client TLS context every frontend uses for mutual TLS.

It reads certificate files, which is I/O, so it cannot live in ``memphis_core`` (the core never
touches a file, a socket or a clock). It is shared here so that the three frontends build the
same context with the same error texts.
"""

from __future__ import annotations

import ssl

from memphis_core import TLS, MemphisConnectError

__all__ = ["tls_context"]


def tls_context(files: TLS) -> ssl.SSLContext:
    """A client context for mutual TLS: our certificate and key, the CA that signs the server.

    TLS 1.2 at least, as the Go SDK requires. The files were checked by ``connect_options``.

    Raises:
        MemphisConnectError: a file cannot be loaded (the Go SDK's texts).
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise MemphisConnectError(f"memphis: error loading ca file: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise MemphisConnectError(f"memphis: error loading client certificate: {exc}") from None
    return context
