"""The API reference builds without a warning and lists every public name.

Builds the Sphinx docs the way ``make docs`` does (``-W``: any warning fails) into a temporary
directory, then reads the inventory the build writes (``objects.inv``, the index other Sphinx
projects link against) and checks that every name of the three frontends' ``__all__``, every
public member of their classes, and the sans-IO entry points of ``memphis_core.Client`` are in
it.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.public_api import FRONTENDS, public_members

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("myst_parser", reason="the docs extra is not installed")

from sphinx.util.inventory import InventoryFile

DOCS = Path(__file__).resolve().parents[2] / "docs"
SANS_IO = (
    "receive_data",
    "data_to_send",
    "next_deadline",
    "handle_timeout",
    "events",
    "connection_made",
    "connection_failed",
    "close",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML build's output directory."""
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def inventory(built: Path) -> set[str]:
    with open(built / "objects.inv", "rb") as handle:
        inv = InventoryFile.load(handle, "", posixpath.join)
    return {name for kind in inv if kind.startswith("py:") for name in inv[kind]}


def expected_names() -> set[str]:
    names: set[str] = set()
    for module in FRONTENDS:
        for name in module.__all__:
            names.add(f"{module.__name__}.{name}")
            obj = getattr(module, name)
            # An alias (memphis_sync.Connecting is Connection) has its members under the class.
            if isinstance(obj, type) and obj.__name__ == name:
                for key in public_members(obj):
                    names.add(f"{module.__name__}.{name}.{key.rsplit('.', 1)[1]}")
    names.update(f"memphis_core.Client.{method}" for method in SANS_IO)
    return names


def test_every_public_name_is_in_the_reference(inventory: set[str]) -> None:
    missing = expected_names() - inventory
    assert not missing, "not in the API reference:\n  " + "\n  ".join(sorted(missing))


def test_protocol_sections_are_linkable(inventory: set[str]) -> None:
    # Code comments cite "docs/protocol.md §4.3": the page must exist and be built.
    assert (DOCS / "protocol.md").is_file()
    assert "memphis_core.Client" in inventory


def test_signatures_show_numbers_not_constant_names(built: Path) -> None:
    # close(timeout=DRAIN_TIMEOUT) in the source; the reader wants the number.
    for page in ("memphis_sync", "memphis_trio", "memphis_asyncio"):
        html = (built / "api" / f"{page}.html").read_text(encoding="utf-8")
        text = " ".join(re.sub(r"<[^>]+>", "", html).split())
        assert "DRAIN_TIMEOUT" not in text, page
        assert "close(timeout: float = 30.0)" in text, page
        # Enum defaults stay as written (more telling than their wire value).
        assert "RetentionType.MAX_MESSAGE_AGE_SECONDS" in text, page


# The declarations of the options (memphis_core.memphis._options and _memphis_io._connect),
# mapped to the declarations whose fields they inherit.
OPTION_DECLARATIONS = {
    "ConnectKeywords": (),
    "ConnectArgs": ("ConnectKeywords",),
    "StationKeywords": (),
    "ConsumerKeywords": (),
    "ProduceKeywords": (),
    "FetchKeywords": (),
    "FetchMessagesKeywords": ("ConsumerKeywords", "FetchKeywords"),
}


@pytest.mark.parametrize("frontend", FRONTENDS, ids=lambda m: m.__name__)
def test_each_option_is_documented_once(inventory: set[str], frontend: ModuleType) -> None:
    # An option is a field of the one TypedDict that declares it; a TypedDict that inherits
    # fields (ConnectArgs, FetchMessagesKeywords) must not list them again.
    page = frontend.__name__
    for name, bases in OPTION_DECLARATIONS.items():
        declaration = getattr(frontend, name)
        inherited = {key for base in bases for key in getattr(frontend, base).__annotations__}
        own = set(declaration.__annotations__) - inherited
        shown = {
            entry.rsplit(".", 1)[1]
            for entry in inventory
            if entry.startswith(f"{page}.{name}.") and entry.count(".") == 2
        }
        assert shown == own, name
        assert own or bases, f"{name} declares nothing"
