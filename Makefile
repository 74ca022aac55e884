# Two entry points, each sets itself up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip's notes about optional local package mirrors are noise here.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: demo test venv lint clean

venv: $(VENV)/.installed

# Exact pins with --no-deps: what CI runs is exactly what is locked (see requirements/lock.txt).
$(VENV)/.installed: requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/lock.txt $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --no-deps -e . $(QUIET_PIP)
	touch $@

demo: venv
	$(BIN)/emo render manifests/demo.yaml

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check emo_cli tests benchmarks

clean:
	rm -rf $(VENV) manifests/out
