"""memphis_asyncio."""

from __future__ import annotations

__all__: list[str] = []
