"""Does an open console slow the data path? Produce throughput with the console idle, then with
a headless browser reloading its overview every second.

One broker (``EmbeddedBroker`` with its console, free ports) serves both phases; each run is
``memphis bench produce`` (the CLI's benchmark, a separate process) and the phases alternate run
by run (idle, refreshing, idle, ...), so a slow drift of the machine hits both alike. The
browser is Debian's Chromium driven by Playwright (``/usr/bin/chromium``, as the console's
tests use it); it logs in once, then reloads ``/`` every second and waits for each load.

    python bench/console_refresh.py [--runs 5] [--count 20000] [--batch 0] [--size 128]

With ``--client http`` the refresher is no browser but plain HTTP requests for what an open
overview asks the console for each second (the page, its ``/api/rates`` graph data and its
``/partials/overview`` panel): the console's own cost, without Chromium's rendering on the same
cores.

Prints each run and the median messages/s of both phases (and ``--json PATH`` writes them).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import statistics
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from memphis_broker import EmbeddedBroker
from memphis_broker.console import start_embedded
from tests.support.chromium import CHROMIUM, launch


class Refresher(threading.Thread):
    """A browser reloading the overview every second until stopped (its own thread: the
    Playwright sync API belongs to the thread that started it)."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.loads = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = launch(pw)
                page = browser.new_page(base_url=self.url)
                page.goto("/login")
                page.fill("#secret", self.token)
                page.click("#login")
                page.wait_for_selector("#count-stations")
                self.ready.set()
                while not self.stopping.wait(1.0):  # the refresh period under test
                    page.reload(wait_until="load")
                    self.loads += 1
                browser.close()
        except BaseException as err:
            self.error = err
            self.ready.set()


class HttpRefresher(Refresher):
    """The same requests an open overview makes each second, without a browser."""

    def run(self) -> None:
        try:
            opener = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )
            page = opener.open(self.url + "login", timeout=30).read().decode()
            csrf = re.search(r'name="csrf" value="([^"]*)"', page)
            form = {"csrf": csrf.group(1) if csrf else "", "username": "root", "secret": self.token}
            opener.open(self.url + "login", urllib.parse.urlencode(form).encode(), timeout=30)
            if "count-stations" not in opener.open(self.url, timeout=30).read().decode():
                raise RuntimeError("the console did not log the refresher in")
            self.ready.set()
            while not self.stopping.wait(1.0):
                for path in ("", "api/rates", "partials/overview"):
                    opener.open(self.url + path, timeout=30).read()
                self.loads += 1
        except BaseException as err:
            self.error = err
            self.ready.set()


def produce_run(broker: EmbeddedBroker, args: argparse.Namespace, run: str) -> float:
    cmd = [
        sys.executable, "-m", "memphis_cli", "bench", "produce",
        "--host", broker.host, "--port", str(broker.port),
        "--connection-token", broker.token or "memphis",
        "--station", f"bench-console-{run}", "--count", str(args.count),
        "--size", str(args.size), "--batch", str(args.batch), "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    doc: dict[str, Any] = json.loads(out.stdout)
    return float(doc["msgs_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per phase")
    ap.add_argument("--count", type=int, default=20_000, help="messages per run")
    ap.add_argument("--size", type=int, default=128, help="bytes per message")
    ap.add_argument("--batch", type=int, default=0, help="memphis bench produce --batch")
    ap.add_argument("--json", metavar="PATH", help="also write the runs as JSON")
    ap.add_argument(
        "--client",
        choices=("browser", "http"),
        default="browser",
        help="who refreshes: headless Chromium (default) or plain HTTP requests",
    )
    args = ap.parse_args()
    if args.client == "browser" and not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 1
    results: dict[str, list[float]] = {"idle": [], "refreshing": []}
    with EmbeddedBroker() as broker:
        stop_console, note = start_embedded(broker, 0)
        url = note.removeprefix(", console ")
        if not url.startswith("http"):
            print(f"console not running: {note}", file=sys.stderr)
            return 1
        try:
            produce_run(broker, args, "warm-up")  # not counted: first connection, imports
            for run in range(args.runs):
                for phase in ("idle", "refreshing"):
                    kind = HttpRefresher if args.client == "http" else Refresher
                    refresher = kind(url, broker.token or "memphis")
                    if phase == "refreshing":
                        refresher.start()
                        refresher.ready.wait(60)
                        if refresher.error is not None:
                            raise refresher.error
                    rate = produce_run(broker, args, f"{phase}-{run}")
                    refresher.stopping.set()
                    if refresher.is_alive():
                        refresher.join(30)
                    results[phase].append(rate)
                    extra = f", {refresher.loads} page loads" if phase == "refreshing" else ""
                    print(f"run {run + 1} {phase:<10} {rate:>10,.0f} msg/s{extra}", flush=True)
        finally:
            stop_console()
    idle, busy = (statistics.median(results[p]) for p in ("idle", "refreshing"))
    print(f"median: idle {idle:,.0f} msg/s, refreshing {busy:,.0f} msg/s ({busy / idle - 1:+.1%})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
