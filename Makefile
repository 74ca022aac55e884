# Two entry points, each sets itself up: `make demo` and `make test`.
#   make demo   the core lock only (what `emo validate/plan` and the CPU `warp` render need)
#   make test   the test lock on top: every extra (diffusion, ray) and the dev tools
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip's notes about optional local package mirrors are noise here.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
# Exact pins with hashes and --no-deps: what runs is exactly what is locked (requirements/lock.sh).
PIP_LOCKED := $(BIN)/python -m pip install --quiet --require-hashes --no-deps

.PHONY: demo test venv venv-test lint lock clean

venv: $(VENV)/.installed-core
venv-test: $(VENV)/.installed-test

# A venv without this stamp (none, or one made before the locks were split) is made afresh, so
# nothing outside the locks stays installed in it.
$(VENV)/.created:
	$(PYTHON) requirements/check_python.py
	$(PYTHON) -m venv --clear $(VENV)
	touch $@

$(VENV)/.installed-core: $(VENV)/.created requirements/core.txt requirements/no-deps-core.txt pyproject.toml
	$(PIP_LOCKED) -r requirements/core.txt $(QUIET_PIP)
	$(PIP_LOCKED) -r requirements/no-deps-core.txt $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --no-deps -e . $(QUIET_PIP)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-core requirements/test.txt requirements/no-deps-test.txt
	$(PIP_LOCKED) -r requirements/test.txt $(QUIET_PIP)
	$(PIP_LOCKED) -r requirements/no-deps-test.txt $(QUIET_PIP)
	touch $@

demo: venv
	$(BIN)/emo render manifests/demo.yaml

test: venv-test
	$(BIN)/python -m pytest -q

lint: venv-test
	$(BIN)/ruff check emo_cli tests benchmarks

# Regenerate every lock from pyproject.toml (needs the package index).
lock:
	requirements/lock.sh

clean:
	rm -rf $(VENV) manifests/out
