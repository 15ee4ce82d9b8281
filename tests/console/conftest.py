"""Fixtures for the console suite: a real ``memphis-broker`` (console on a free port) and
Debian's Chromium driven headless by Playwright.

Playwright's own browser download is never used: the tests launch ``/usr/bin/chromium``
(``apt-get install chromium``; ``make test`` installs it, see the Makefile).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import CHROMIUM, launch
from tests.support.console import ConsoleBroker, Screenshot
from tests.support.launcher import launcher

#: The committed screenshots (shown in the README and docs/console.md), rewritten only when
#: ``MEMPHIS_UPDATE_SCREENSHOTS=1`` (docs/console.md, "Tests"): a plain run leaves the tree clean.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBroker]:
    store = tmp_path_factory.mktemp("console-broker")
    args = ["--port", "0", "--monitor-port", "0", "--console-port", "0", "--store-dir", str(store)]
    with launcher(*args) as proc:
        line = proc.ready(timeout=60)
        port = re.search(r"nats://127\.0\.0\.1:(\d+)", line)
        url = re.search(r", console (http://\S+/)", line)
        assert port, line
        assert url, line
        yield ConsoleBroker(proc, int(port.group(1)), url.group(1))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, console_broker: ConsoleBroker) -> Iterator[Any]:
    """A fresh browser context (no cookies), its page's default timeout 20 s; the test fails if
    the page reports a Content-Security-Policy violation."""
    context = browser.new_context(
        base_url=console_broker.console_url, viewport={"width": 1400, "height": 900}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    # The pages' Content-Security-Policy must not break them: any violation fails the test.
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    try:
        yield page
    finally:
        context.close()
    assert violations == []


@pytest.fixture(scope="session")
def screenshot(tmp_path_factory: pytest.TempPathFactory) -> Screenshot:
    """Take a full-page screenshot ``<name>.png`` of a page; returns its path.

    Into a temporary directory by default; into docs/screenshots/ with
    ``MEMPHIS_UPDATE_SCREENSHOTS=1``, to refresh the committed ones.
    """
    if os.environ.get("MEMPHIS_UPDATE_SCREENSHOTS") == "1":
        folder = DOCS_SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("screenshots")

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0, path
        return path

    return take
