"""What every suite's brokers and objects are called: credentials, unique names, data files."""

from __future__ import annotations

import uuid
from pathlib import Path

__all__ = ["PASSWORD", "SCHEMAS", "TOKEN", "USER", "unique"]

#: The test brokers' connection token (token mode) and root's password (password mode).
TOKEN = "memphis"
PASSWORD = "memphis"
#: The user every suite connects as.
USER = "root"

#: Schema files of all four Schemaverse types (tests/data/schemas).
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


def unique(prefix: str) -> str:
    """A valid, unique station/producer/consumer/schema name (lower case, at most 128 chars)."""
    base = prefix.lower().replace("_", "-").strip("-.")[:60] or "t"
    return f"{base}-{uuid.uuid4().hex[:10]}"
