"""The three frontends' public surface as a user reaches it: modules, classes, their members."""

from __future__ import annotations

import enum
import inspect

import memphis_asyncio
import memphis_sync
import memphis_trio

__all__ = ["FRONTENDS", "public_members"]

FRONTENDS = (memphis_sync, memphis_trio, memphis_asyncio)


def _is_documentable(raw: object) -> bool:
    return isinstance(raw, (property, staticmethod, classmethod)) or inspect.isfunction(raw)


def public_members(cls: type) -> dict[str, object]:
    """``{"<defining module>.<class>.<name>": raw member}`` for the public members of ``cls``.

    Keyed by the class that defines the member, so an inherited member is checked where it is
    written (and only once for the three frontends that share it).
    """
    found: dict[str, object] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(c for c in cls.__mro__ if name in vars(c))
        if owner in (object, enum.Enum, enum.StrEnum, str, int, Exception, BaseException):
            continue  # the builtins' own methods (str.upper on a str enum...) are not ours
        raw = vars(owner)[name]
        if _is_documentable(raw):
            found[f"{owner.__module__}.{owner.__qualname__}.{name}"] = raw
    return found
