"""The errors each frontend exports: every ``MemphisError`` subclass a caller can meet."""

from __future__ import annotations

from typing import Any


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_every_error_class_is_importable_from_the_frontend(memphis: Any) -> None:
    # Report: NoRespondersError and ConnectionLostError were exported by no frontend.
    import memphis_core

    # ParseError never reaches user code: the session turns it into a disconnect, and what a
    # caller sees is ConnectionClosedError or MemphisConnectError with its text.
    errors = {
        name
        for name in memphis_core.__all__
        if isinstance(getattr(memphis_core, name), type)
        and issubclass(getattr(memphis_core, name), memphis_core.MemphisError)
        and name != "ParseError"
    }
    missing = sorted(name for name in errors if not hasattr(memphis, name))
    assert missing == []
