# The commands: `make run`, `make check` (the fast lane: lint, types, import rules and the tests that need no
# servers) and `make test` (everything). All install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK_DIR ?= .stack
DEMO_PAGES ?= 50000

.PHONY: run check test setup system-deps node-deps lint typecheck unit stack-up stack-down lock clean

setup: system-deps $(VENV)/.installed node-deps

system-deps:
	@bash ops/bootstrap.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

# npm packages, from their lock files: GraphiQL's assets (served by the gateway itself, never from a CDN) and
# the JavaScript clients the tests run. Without npm they are skipped with a message; the playground page and
# the client tests then say what is missing.
NPM ?= npm
NPM_CI := $(NPM) ci --no-audit --no-fund --loglevel=error
NODE_PROJECTS := gateway/static/vendor tests/clients

node-deps: $(addsuffix /node_modules/.package-lock.json,$(NODE_PROJECTS))

%/node_modules/.package-lock.json: %/package.json %/package-lock.json
	@if command -v $(NPM) >/dev/null 2>&1; then \
	  echo "npm ci in $*" && cd $* && $(NPM_CI); \
	else \
	  echo "npm not found: skipping the packages of $* (install nodejs and npm)" >&2; \
	fi

run: setup
	$(PY) -m ops stack up --dir $(STACK_DIR)
	eval "$$($(PY) -m ops stack env --dir $(STACK_DIR))" && \
	  $(PY) -m gateway migrate && \
	  $(PY) -m ops corpus --dir $(STACK_DIR) --pages $(DEMO_PAGES) --if-empty && \
	  exec $(PY) -m gateway serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Tests that use the PostgreSQL stack, or start servers of their own, are marked `stack` in tests/conftest.py.
check: lint
	$(PY) -m pytest -q -m "not stack" $(PYTEST_ARGS)

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

stack-up: setup
	$(PY) -m ops stack up --dir $(STACK_DIR)

stack-down:
	$(PY) -m ops stack down --dir $(STACK_DIR)

# Refresh the constraints file from the current venv (run after changing dependencies in pyproject.toml).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
