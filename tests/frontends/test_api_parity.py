"""The three frontends expose one API: same names, same parameters, same defaults.

Only the calling convention differs (``await`` in the async frontends). This keeps them from
drifting apart one parameter at a time. The names they share with the core (every error, the
enums, the value types) are the core's own objects, so ``except memphis_sync.MemphisError``
catches what any layer raises.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from types import ModuleType

import pytest

import memphis_asyncio
import memphis_core
import memphis_sync
import memphis_trio
from memphis_core.memphis import _errors

FRONTENDS = (memphis_sync, memphis_trio, memphis_asyncio)
CLASSES = ("Connection", "Station", "Producer", "Consumer", "Message")
# The names each frontend defines itself (the rest come from the core).
OWN = {*CLASSES, "Connecting", "ProduceHandle", "connect", "ConnectArgs"}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not callable(member):
            continue
        out[name] = inspect.signature(member)
    return out


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object, object]]:
    # The annotation too: ``**options: Unpack[ConsumerKeywords]`` is where the options are now.
    return [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()]


@pytest.mark.parametrize("frontend", [memphis_asyncio, memphis_trio], ids=lambda m: m.__name__)
def test_same_public_names(frontend: ModuleType) -> None:
    assert sorted(frontend.__all__) == sorted(memphis_sync.__all__)


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_shared_names_are_the_cores_objects(frontend: ModuleType) -> None:
    shared = set(frontend.__all__) - OWN
    assert shared <= set(memphis_core.__all__)
    for name in shared:
        assert getattr(frontend, name) is getattr(memphis_core, name), name


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_every_error_is_exported(frontend: ModuleType) -> None:
    # Every exception class the library raises lives in _errors (tests/core/test_errors.py).
    for name in _errors.__all__:
        assert name in frontend.__all__, name
        assert getattr(frontend, name) is getattr(_errors, name), name


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_nothing_public_outside_all(frontend: ModuleType) -> None:
    public = {
        name
        for name, value in vars(frontend).items()
        if not name.startswith("_") and name != "annotations" and not isinstance(value, ModuleType)
    }
    assert public <= set(frontend.__all__), sorted(public - set(frontend.__all__))


@pytest.mark.parametrize("frontend", [memphis_asyncio, memphis_trio], ids=lambda m: m.__name__)
@pytest.mark.parametrize("class_name", CLASSES)
def test_same_methods_and_parameters(frontend: ModuleType, class_name: str) -> None:
    sync_methods = public_methods(getattr(memphis_sync, class_name))
    async_methods = public_methods(getattr(frontend, class_name))
    assert set(async_methods) == set(sync_methods)
    for name, signature in sync_methods.items():
        assert parameters(async_methods[name]) == parameters(signature), f"{class_name}.{name}"


@pytest.mark.parametrize("frontend", [memphis_asyncio, memphis_trio], ids=lambda m: m.__name__)
def test_connect_takes_the_same_arguments(frontend: ModuleType) -> None:
    # The same declaration (ConnectArgs); only what a callback may return differs: None in
    # memphis_sync, also an awaitable in the async frontends.
    def declared(fn: Callable[..., object]) -> list[tuple[str, object, object, object]]:
        return [
            (name, kind, default, re.sub(r"ConnectArgs\[.*\]\]$", "ConnectArgs]", str(note)))
            for name, kind, default, note in parameters(inspect.signature(fn))
        ]

    assert declared(frontend.connect) == declared(memphis_sync.connect)
    assert "ConnectArgs[None]" in str(inspect.signature(memphis_sync.connect))
    assert "ConnectArgs[Awaitable[None] | None]" in str(inspect.signature(frontend.connect))
