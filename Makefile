# relisten: `make run` starts everything on the embedded default, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: help setup run test lint unit bench bench-live yardstick chaos clean browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.4"

setup: $(UV)  ## install everything that is missing (idempotent)
	$(UV) sync --all-packages --locked

run: setup  ## start NATS and all six services; API on http://127.0.0.1:$${RELISTEN_PORT:-8000}
	$(UV) run --no-sync relisten up

lint: setup  ## ruff and mypy
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy

browser:  ## headless Chromium and its driver for the web page test (Debian packages)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian packages chromium and chromium-driver for the web page test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }; }

test: setup lint browser  ## the whole test suite (lint, types, unit, NATS integration, end to end)
	$(UV) run --no-sync pytest

unit: setup  ## only the tests that need no NATS
	$(UV) run --no-sync pytest -m "not nats and not e2e"

chaos: setup  ## the long cluster test: 3 NATS nodes, 2 replicas of every service, 20 jobs, a node and replicas killed
	RELISTEN_CLUSTER_JOBS=$${RELISTEN_CLUSTER_JOBS:-20} $(UV) run --no-sync pytest -q -s tests/e2e/test_cluster.py

bench: setup  ## accuracy and cost benchmark over real long-form speech
	$(UV) run --no-sync python -m relisten.bench

bench-live: setup  ## live transcription: first-delta and completed latency, WER vs the file pipeline, concurrent streams
	$(UV) run --no-sync python -m relisten.bench_live

yardstick: setup  ## references, pipeline (replayed), router line and oracle per tuning/validation part, with intervals
	$(UV) run --no-sync python -m relisten.yardstick --users

clean:  ## remove the virtual environments and local data
	rm -rf .venv $(TOOLS) var
