# Every target bootstraps .venv itself, so `make demo` and `make test` are the whole set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make test fuzzes a fixed number of inputs from a fixed seed: the same run every time, so CI
# cannot fail on the luck of the draw; make fuzz explores for real.
FUZZ_RUNS ?= 12000

.PHONY: demo test unasync lint typecheck unit fuzz fuzz-short bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# memphis_sync's public classes are generated from _memphis_async's (see scripts/unasync.py).
unasync: $(STAMP)
	$(PY) scripts/unasync.py

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) scripts/unasync.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check memphis_core memphis_sync memphis_trio memphis_asyncio memphis_broker _memphis_async _memphis_io

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict

unit: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider

fuzz-short: $(STAMP)
	$(PY) fuzz/run_all.py --runs $(FUZZ_RUNS) --seed 1

test: lint typecheck unit fuzz-short

fuzz: $(STAMP)
	$(PY) fuzz/run_all.py --seconds 600

# bench/latency.py also rewrites bench/out/latency.json and latency.png (committed figures).
bench: $(STAMP)
	$(PY) bench/parser.py
	$(PY) bench/throughput.py
	$(PY) bench/latency.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
