# Every target bootstraps .venv itself, so `make demo` and `make test` are the whole set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make demo needs only the broker's dependencies; the full set (tests, lint, docs) is make test's.
DEMO_STAMP := $(VENV)/.installed-demo
# make test fuzzes a fixed number of inputs from a fixed seed: the same run every time, so CI
# cannot fail on the luck of the draw; make fuzz explores for real.
FUZZ_RUNS ?= 12000

.PHONY: demo console test unasync lint typecheck docs unit fuzz fuzz-short bench stress soak clean chromium memphis-js mypyc mypyc-clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --default-pip
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev,docs]'
	touch $(STAMP) $(DEMO_STAMP)

# memphis_sync's public classes are generated from _memphis_async's (see scripts/unasync.py).
unasync: $(STAMP)
	$(PY) scripts/unasync.py

# A venv without pip takes 0.2 s instead of ~10 s (ensurepip); the host's pip installs into it
# (pip >= 22.3: --python). Without a usable host pip, the venv gets its own.
$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	if $(PYTHON) -m pip --python $(PY) --version >/dev/null 2>&1; then \
	  $(PYTHON) -m pip --python $(PY) install --quiet -e '.[broker,console]'; \
	else \
	  $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --default-pip; \
	  $(PY) -m pip install --quiet -e '.[broker,console]'; \
	fi
	touch $(DEMO_STAMP)

# `make demo PORT=7777 MONITOR_PORT=8333` (or MEMPHIS_DEMO_PORT / MEMPHIS_DEMO_MONITOR_PORT in
# the environment): the broker's client and monitoring ports; 0 picks a free one. PORT and
# MONITOR_PORT count only on the command line: make would also read them from the environment,
# where PORT is often set for something else.
cli_var = $(if $(filter command line,$(origin $(1))),$($(1)))
demo: $(DEMO_STAMP)
	MEMPHIS_DEMO_PORT=$(or $(call cli_var,PORT),$(MEMPHIS_DEMO_PORT)) \
	MEMPHIS_DEMO_MONITOR_PORT=$(or $(call cli_var,MONITOR_PORT),$(MEMPHIS_DEMO_MONITOR_PORT)) \
	$(PY) examples/demo.py

# A broker with sample traffic to look at in the console (docs/console.md); Ctrl-C stops it.
console: $(DEMO_STAMP)
	$(PY) scripts/console_traffic.py

lint: $(STAMP)
	$(PY) scripts/unasync.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check memphis_core memphis_sync memphis_trio memphis_asyncio memphis_broker _memphis_async _memphis_io memphis_cli

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# The console's browser tests (tests/console) drive Debian's Chromium through Playwright; never
# `playwright install`. Installed when missing, which needs root (as in CI); otherwise the tests
# skip, saying so (and fail under CI=true).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else echo "make: $(CHROMIUM) missing and not root: the console's browser tests will skip"; fi

# The official Node SDK for tests/interop/test_memphis_js_sdk.py, pinned by the package-lock in
# tests/interop/memphis-js and installed from the npm registry with the machine's npm (no
# install scripts run). Without npm the test skips, saying so (and fails under CI=true).
MEMPHIS_JS := .cache/memphis-js
$(MEMPHIS_JS)/.installed: tests/interop/memphis-js/package.json tests/interop/memphis-js/package-lock.json
	@if command -v npm >/dev/null; then \
	  mkdir -p $(MEMPHIS_JS) && cp tests/interop/memphis-js/package*.json $(MEMPHIS_JS)/ && \
	  npm ci --prefix $(MEMPHIS_JS) --no-audit --no-fund --ignore-scripts --silent && \
	  touch $@; \
	else echo "make: npm missing: the Node SDK interop test will skip"; fi
memphis-js: $(MEMPHIS_JS)/.installed

unit: $(STAMP) chromium memphis-js
	$(VENV)/bin/pytest -q -p no:cacheprovider

fuzz-short: $(STAMP)
	$(PY) fuzz/run_all.py --runs $(FUZZ_RUNS) --seed 1

test: lint typecheck docs unit fuzz-short

fuzz: $(STAMP)
	$(PY) fuzz/run_all.py --seconds 600

# Not part of make test: the cluster, broker and conformance suites STRESS_RUNS times with a CPU
# hog on every core (scripts/stress.py); each failure's test id is printed.
STRESS_RUNS ?= 3
STRESS_ARGS ?=
stress: $(STAMP)
	STRESS_RUNS=$(STRESS_RUNS) $(PY) scripts/stress.py -- $(STRESS_ARGS)

# Not part of make test: a 3-node cluster under a mixed workload with a node SIGKILLed every
# 20-40 s for SOAK_MINUTES (scripts/soak.py, docs/cluster.md); exits non-zero on a loss.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(PY) scripts/soak.py --minutes $(SOAK_MINUTES)

# bench/throughput.py's table also goes to bench/out/throughput.txt and .json, from which
# bench/readme_tables.py renders the README's tables; bench/latency.py rewrites
# bench/out/latency.json and latency.png (committed figures).
bench: $(STAMP)
	$(PY) bench/parser.py
	$(PY) bench/throughput.py --json bench/out/throughput.json > bench/out/throughput.txt; \
	  status=$$?; cat bench/out/throughput.txt; exit $$status
	$(PY) bench/durability.py
	$(PY) bench/latency.py

# Optional, not part of demo/test/CI: compile memphis_core with mypyc, in place (extensions next to
# the sources; needs a C compiler and the Python headers). Every importer then gets the compiled
# core, tests included, until make mypyc-clean; rebuild after editing the core (docs/compiled.md).
mypyc: $(STAMP)
	$(PY) scripts/build_mypyc.py

mypyc-clean:
	$(PY) scripts/build_mypyc.py --clean

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis docs/_build
