"""tests/core runs without a network: the core is tested bytes in, events out.

An autouse fixture makes every way to open a connection or claim a port fail the test, so a
test that dials a server (that belongs in tests/frontends or tests/conformance) cannot slip
in here. Subprocesses a test starts are not covered; none of them touches the network.
"""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import pytest

#: ``socket.socket`` methods that reach the network or take a port.
GUARDED_METHODS = ("connect", "connect_ex", "bind", "sendto")


class NetworkUsedError(AssertionError):
    """A test under tests/core tried to use the network."""


def _refuse(what: str, skip: int) -> Any:
    """A stand-in for ``what`` that raises; ``skip`` leading arguments (``self``) are not shown."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        called = ", ".join(repr(arg) for arg in args[skip:])
        raise NetworkUsedError(
            f"{what}({called}): tests/core is network-free; a test that needs a server "
            "belongs in tests/frontends or tests/conformance"
        )

    return refuse


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test at its first connect, bind or send to an address."""
    for method in GUARDED_METHODS:
        monkeypatch.setattr(socket.socket, method, _refuse(f"socket.{method}", skip=1))
    monkeypatch.setattr(socket, "create_connection", _refuse("socket.create_connection", skip=0))
