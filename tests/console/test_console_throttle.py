"""Failed-login throttling (``memphis_broker.console._throttle``, docs/console.md "Security"):
the policy on a fake clock, then the console refusing a sixth try in a real browser."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from memphis_broker.console._throttle import LIMIT, WINDOW_S, LoginThrottle
from tests.support.console import log_in
from tests.support.launcher import launcher
from tests.support.names import TOKEN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_the_limit_until_its_oldest_failure_is_a_window_old() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(LIMIT):
        assert throttle.retry_after("a") == 0, i
        throttle.failed("a")
        clock.now += 1.0
    # The first failure was LIMIT seconds ago: it counts for WINDOW_S - LIMIT more seconds.
    assert throttle.retry_after("a") == WINDOW_S - LIMIT
    assert throttle.retry_after("b") == 0  # another address is not affected
    clock.now += WINDOW_S - LIMIT - 0.5
    assert throttle.retry_after("a") == 1
    clock.now += 0.5
    assert throttle.retry_after("a") == 0  # the oldest failure left the window: one more try
    throttle.failed("a")
    assert throttle.retry_after("a") > 0


def test_a_successful_login_clears_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(LIMIT - 1):
        throttle.failed("a")
    throttle.succeeded("a")
    for _ in range(LIMIT - 1):
        throttle.failed("a")
    assert throttle.retry_after("a") == 0


def test_memory_is_bounded_by_addresses_and_by_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, max_clients=3)
    for client in ("a", "b", "c", "d"):
        for _ in range(LIMIT):
            throttle.failed(client)
    assert throttle.retry_after("a") == 0  # the least recently failed address was forgotten
    assert all(throttle.retry_after(c) > 0 for c in ("b", "c", "d"))
    for _ in range(100):
        throttle.failed("d")
    assert len(throttle._failures["d"]) == LIMIT  # only the last LIMIT failures are kept
    clock.now += WINDOW_S
    assert [throttle.retry_after(c) for c in ("b", "c", "d")] == [0, 0, 0]
    assert throttle._failures == {}


def test_the_console_refuses_a_sixth_login_even_with_the_right_token(
    browser: Any, tmp_path: Path
) -> None:
    args = ["--port", "0", "--monitor-port", "0", "--console-port", "0"]
    with launcher(*args, "--store-dir", str(tmp_path)) as proc:
        url = re.search(r", console (http://\S+/)", proc.ready(timeout=60))
        assert url, "no console URL"
        context = browser.new_context(base_url=url.group(1))
        context.set_default_timeout(20_000)
        page = context.new_page()
        try:
            for _ in range(LIMIT):
                log_in(page, "wrong-token")
                assert page.locator("#login-error").inner_text() == "login refused by the broker"
            log_in(page, TOKEN)
            error = page.locator("#login-error").inner_text()
            refusal = r"too many failed logins from this address: try again in \d+ s"
            assert re.fullmatch(refusal, error), error
            assert "/login" in page.url  # not logged in
            csrf = page.locator('input[name="csrf"]').get_attribute("value")
            form = {"csrf": csrf or "", "username": "root", "secret": TOKEN}
            refused = page.request.post("/login", form=form)
            assert refused.status == 429
            assert 0 < int(refused.headers["retry-after"]) <= WINDOW_S
        finally:
            context.close()
        # Prometheus' basic_auth from the same address is refused too, without a broker check.
        request = urllib.request.Request(f"{url.group(1)}metrics")
        with pytest.raises(urllib.error.HTTPError) as scrape:
            urllib.request.urlopen(request, timeout=30)
        assert scrape.value.code == 429
