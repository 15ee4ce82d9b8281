"""A bug in the parser must surface as itself, never as a protocol error.

h11's contract: only protocol violations become ``RemoteProtocolError``; anything else escaping
the parser is a bug and must propagate, or it would be hidden behind a routine reconnect and
the fuzzers' invariant ("accepted, or RemoteProtocolError") could never fail.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from memphis_core import RemoteProtocolError
from memphis_core.nats import _parser
from memphis_core.nats._parser import ParseError, Parser
from tests.support.compiled import pure_only

FUZZ = Path(__file__).resolve().parents[3] / "fuzz"


def _boom(line: bytes) -> object:
    raise IndexError("injected parser bug")


@pure_only
def test_injected_bug_propagates_from_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parser.Parser, "_other", staticmethod(_boom))
    with pytest.raises(IndexError, match="injected"):
        Parser().feed(b"PING\r\n")


def test_protocol_errors_still_become_parse_errors() -> None:
    with pytest.raises(ParseError) as info:
        Parser().feed(b"PING\r\nBOGUS\r\n")
    assert isinstance(info.value, RemoteProtocolError)
    assert len(info.value.frames) == 1  # the PING before the bad line is handed out


@pure_only
def test_fuzz_harness_reports_an_injected_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("atheris")
    spec = importlib.util.spec_from_file_location("fuzz_parser_under_test", FUZZ / "fuzz_parser.py")
    assert spec is not None
    assert spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fuzz_parser_under_test", harness)
    spec.loader.exec_module(harness)
    harness.test_one_input(b"PING\r\n")  # the healthy parser passes the harness
    monkeypatch.setattr(_parser.Parser, "_other", staticmethod(_boom))
    with pytest.raises(IndexError, match="injected"):
        harness.test_one_input(b"PING\r\n")
