"""Mutual TLS on the three frontends, against a bare nats-server that verifies client certificates.

The async reader upgrades the stream after INFO (memphis_asyncio, memphis_trio); the blocking
client does the same on its socket. A wrong CA fails clearly, and so does a TLS option with no
files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import memphis_sync
from tests.support.async_lib import Lib
from tests.support.names import TOKEN, USER
from tests.support.nats_server import NatsServer


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    base = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("memphis-client")
    other_ca = trustme.CA()
    paths = {
        "ca": base / "ca.pem",
        "server_cert": base / "server.pem",
        "server_key": base / "server.key",
        "client_cert": base / "client.pem",
        "client_key": base / "client.key",
        "other_ca": base / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    return {name: str(path) for name, path in paths.items()}


def test_mutual_tls(lib: Lib, tmp_path: Path, certificates: dict[str, str]) -> None:
    memphis = lib.memphis
    files = (certificates["server_cert"], certificates["server_key"], certificates["ca"])
    with NatsServer(tmp_path, token=TOKEN, tls=files) as server:

        def connect(tls: Any) -> Any:
            return memphis.connect(
                "localhost", USER, connection_token=TOKEN, port=server.port, tls=tls, timeout=5
            )

        async def body() -> None:
            good = memphis.TLS(
                certificates["client_cert"], certificates["client_key"], certificates["ca"]
            )
            async with connect(good) as conn:
                assert conn.is_connected
                # No control plane on this bare server: the request travels over TLS and comes
                # back as "no responders", which proves the encrypted round trip.
                with pytest.raises(memphis.MemphisError, match="no responders"):
                    await conn.create_station("tls-station")
            wrong = memphis.TLS(
                certificates["client_cert"], certificates["client_key"], certificates["other_ca"]
            )
            with pytest.raises(memphis.MemphisConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await connect(wrong)

        lib.run(body)


def test_mutual_tls_blocking(tmp_path: Path, certificates: dict[str, str]) -> None:
    tls_files = (certificates["server_cert"], certificates["server_key"], certificates["ca"])
    with NatsServer(tmp_path, token="memphis", tls=tls_files) as server:
        good = memphis_sync.TLS(
            certificates["client_cert"], certificates["client_key"], certificates["ca"]
        )
        with memphis_sync.connect(
            "localhost", "root", connection_token="memphis", port=server.port, tls=good
        ) as conn:
            assert conn.is_connected
            # No control plane on this bare server: a control request must travel over TLS and
            # come back as "no responders", which proves the encrypted round trip works.
            with pytest.raises(memphis_sync.MemphisError, match="no responders"):
                conn.create_station("tls-station")
        wrong_ca = memphis_sync.TLS(
            certificates["client_cert"], certificates["client_key"], certificates["other_ca"]
        )
        with pytest.raises(memphis_sync.MemphisConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            memphis_sync.connect(
                "localhost",
                "root",
                connection_token="memphis",
                port=server.port,
                tls=wrong_ca,
                timeout=5,
            )
        no_client_cert = memphis_sync.TLS("", "", "")  # all empty = no TLS at all
        with pytest.raises(memphis_sync.MemphisConnectError, match="TLS"):
            memphis_sync.connect(
                "localhost",
                "root",
                connection_token="memphis",
                port=server.port,
                tls=no_client_cert,
                timeout=5,
            )
