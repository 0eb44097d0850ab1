# The two commands of the README (make demo, make test), plus the tiers and the linters.
# Each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
PYTEST := $(BIN)/python -m pytest -q -rfE $(PYTEST_ARGS)

.PHONY: demo test test-fast test-integration test-deps install lint lint-deps bench clean

$(BIN)/orch: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/orch

install: $(BIN)/orch

## make demo: install orch in .venv and watch an issue become a branch on this machine
demo: install
	$(BIN)/orch demo

test-deps:
	bash scripts/test-deps.sh

## make test: install sshd & co (apt, if missing), orch with its test extras in .venv, then run
## the fast tier and the integration tier (each prints its time)
test: test-deps install
	@$(MAKE) --no-print-directory test-fast
	@$(MAKE) --no-print-directory test-integration

## make test-fast: the pure and in-process tests (no sshd, git remote, GitHub server, orch or other Python process)
test-fast: install
	@start=$$(date +%s); $(PYTEST) -m "not integration"; rc=$$?; \
	  echo "fast tier: $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

## make test-integration: the tests against real sshd, git remotes, the GitHub-style server, orch and Python processes
test-integration: test-deps install
	@start=$$(date +%s); $(PYTEST) -m integration; rc=$$?; \
	  echo "integration tier: $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

$(VENV)/.lint-deps: $(BIN)/orch setup.cfg
	$(BIN)/pip install -q -e '.[test,lint]'
	touch $@

lint-deps: $(VENV)/.lint-deps

## make lint: ruff (lint + import order), mypy (config in pyproject.toml), no import cycles,
## shellcheck on the repository's own shell scripts
lint: test-deps lint-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/import_cycles.py orchestrator
	shellcheck .ci/run scripts/*.sh

## make bench: orch beside its peers (fan-out), the store at 0/20k/100k tasks, dispatch
## overhead, live-log latency: one run, one table (bench/README.md); BENCH_ARGS=--quick
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
