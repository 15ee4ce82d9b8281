"""What the ``memphis`` command's tests get back from a run of ``memphis_cli.main``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Cli", "Result"]


@dataclass
class Result:
    """Exit code and captured stdout/stderr of one run."""

    code: int
    out: str
    err: str

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


#: ``cli("station", "list", stdin=...)``: the ``cli`` fixture's type.
Cli = Callable[..., Result]
