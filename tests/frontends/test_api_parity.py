"""The three frontends expose one API: same names, same parameters, same defaults.

Only the calling convention differs (``await`` in the async frontends). This keeps them from
drifting apart one parameter at a time.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import memphis_asyncio
import memphis_sync
import memphis_trio

CLASSES = ("Connection", "Station", "Producer", "Consumer", "Message")
ASYNC_ONLY = {"Connecting"}


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
    assert set(frontend.__all__) - ASYNC_ONLY == set(memphis_sync.__all__)


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
    assert parameters(inspect.signature(frontend.connect)) == parameters(
        inspect.signature(memphis_sync.connect)
    )
