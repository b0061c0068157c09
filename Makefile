# `make test` and `make run` set up everything they need on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVERS := tests/integration/servers
NODE_STAMP := $(SERVERS)/node_modules/.installed

.PHONY: test run lint typecheck unit bench clean

# The main job: a seeded synthetic session through the whole desk under devhost.
RUN_DIR := .desk/run
RUN_EVENTS ?= 30000
ARGS ?=

$(STAMP): requirements.txt requirements-bridge.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The protocol servers the integration tests start (pinned by package-lock.json).
$(NODE_STAMP): $(SERVERS)/package.json $(SERVERS)/package-lock.json
	npm ci --prefix $(SERVERS) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Headless Chromium for the dashboard's browser test (tests/e2e): Debian's package.
CHROMIUM_STAMP := $(VENV)/.chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

$(CHROMIUM_STAMP): $(STAMP)
	command -v chromium >/dev/null 2>&1 \
		|| DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium \
		|| ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium)
	touch $(CHROMIUM_STAMP)

test: $(STAMP) $(NODE_STAMP) $(CHROMIUM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/pytest

run: $(STAMP)
	rm -rf $(RUN_DIR)
	TRADING_BOOKS_PATH=$(RUN_DIR)/books.sqlite TRADING_ENTRY_TIMEOUT_S=10 OTEL_TRACES_EXPORTER=none \
	TRADING_POLL_INTERVAL_S=1 TRADING_EXIT_TIMEOUT_S=60 \
	$(BIN)/python -m devhost --state-dir $(RUN_DIR)/devhost start \
		--feed synthetic --symbols AAPL,MSFT,NVDA,SPY,QQQ --seed 7 --limit $(RUN_EVENTS) \
		--market-start 2026-03-02T20:10:00Z --timers-every 1 --log-level WARNING \
		--session --report activities.report:print_session_report $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The backtest benchmark compares with vectorbt and backtesting.py, which stay out of the
# app's environment: their own, inside .venv (ignored, and removed by `make clean`).
BENCH_VENV := $(VENV)/bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

# Spans would only be printed between the figures.
bench: export OTEL_TRACES_EXPORTER = none
bench: $(STAMP) $(NODE_STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.ticks
	$(BIN)/python -m bench.durable
	$(BIN)/python -m bench.trigger
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.imports
	$(BIN)/python -m bench.stores
	$(BENCH_VENV)/bin/python -m bench.backtest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .desk tests/e2e/artifacts
