# The two commands of the README. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-deps install bench clean

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

## make test: install sshd & co (apt, if missing), orch with its test extras in .venv, run the suite
test: test-deps install
	$(BIN)/python -m pytest -q -rfE

## make bench: orch beside its peers (fan-out), the store at 0/20k/100k tasks, dispatch
## overhead, live-log latency: one run, one table (bench/README.md); BENCH_ARGS=--quick
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
