# The two commands of the README. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/orch: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/orch

install: $(BIN)/orch

## make demo: install orch in .venv and watch an issue become a branch on this machine
demo: install
	$(BIN)/orch demo

## make test: install orch with its test extras in .venv and run the whole suite
test: install
	$(BIN)/python -m pytest -q -rfE

## make bench: fan-out benchmark of `orch hosts` against Ansible, ssh and bare asyncssh
bench: install
	$(BIN)/python bench/hosts_fanout.py

clean:
	rm -rf $(VENV) build *.egg-info
