# Two commands do everything on a fresh Linux machine with Python 3.11 and git:
#   make demo   - install, start the embedded stack (MLflow + Ray + control loop), run the demo
#   make test   - install, then ruff, mypy --strict, import contracts and the whole test suite
SHELL := /bin/bash
UV := $(shell scripts/ensure-uv.sh)
ifeq ($(UV),)
$(error could not find or install uv: see the message of scripts/ensure-uv.sh above)
endif
# Scripts run by make (fetch-helm.sh inside the tests, sync-chart-crd.sh) reuse this uv instead of looking again.
export UV
export UV_PYTHON := 3.11

.PHONY: setup demo demo-down test lint typecheck contracts pytest crd bench clean

setup:
	$(UV) sync --frozen --all-extras

# Every chapter: rollout, drift, fairness, quality (one or some: `uv run steward demo --chapter drift,quality`).
demo: setup
	$(UV) run --frozen steward demo

demo-down:
	$(UV) run --frozen steward dev down

lint: setup
	$(UV) run --frozen ruff check steward tests benchmarks
	$(UV) run --frozen ruff format --check steward tests benchmarks

typecheck: setup
	$(UV) run --frozen mypy

contracts: setup
	$(UV) run --frozen lint-imports

pytest: setup
	$(UV) run --frozen pytest -p no:cacheprovider

test: lint typecheck contracts pytest

crd: setup
	scripts/sync-chart-crd.sh

bench: setup
	$(UV) run --frozen python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf .venv .steward .mypy_cache .ruff_cache .pytest_cache
