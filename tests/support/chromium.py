"""Debian's Chromium for the console's browser tests and bench/console_refresh.py.

Playwright drives it through ``executable_path``; its own browser download (``playwright
install``) is never used. ``make test`` installs the ``chromium`` package when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "launch"]

CHROMIUM = Path(os.environ.get("MEMPHIS_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that reaches out to the network by itself (updates, sync, QUIC probes).
_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """Start Chromium headless with a ``sync_playwright()`` (or async) handle."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
