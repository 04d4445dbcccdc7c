# tact: `make demo` to see it work, `make test` to prove it. Both install everything first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help compiled install up down reset demo test test-unit test-integration check lint typecheck fmt bench schemas clean

help:
	@echo "make demo       install, start Kafka + Redis + worker; simulated shoppers answer its offers live"
	@echo "make test       install, start what the tests need, run lint, types and the whole suite"
	@echo "make up / down  start / stop the local Kafka broker and redis-server"
	@echo "make reset      stop them and delete their data (topics, state): a fresh start"
	@echo "make install    install everything; then run .venv/bin/tact (or source .venv/bin/activate)"
	@echo "make bench      run the benchmarks in benchmarks/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "tact needs Python >= 3.11 (found $$($(PYTHON) --version)); set PYTHON=..."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
# (without setuptools' banner about editable installs, which every install printed)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The decision core compiled with mypyc (deploy/compile_core.py): about 1.7 times as fast in
# replay, the same decisions byte for byte. tact uses it only while it matches the sources
# (app/__init__.py); TACT_PURE_PYTHON=1 runs pure Python. Without a C compiler it is skipped.
# It checks its manifest itself (a fraction of a second when nothing changed).
compiled: $(STAMP)
	@$(PY) deploy/compile_core.py

install: $(STAMP) compiled
	@./deploy/redis.sh install
	@./deploy/kafka/broker.sh fetch

up: install
	@./deploy/stack.sh up

down:
	@./deploy/stack.sh down

# The local stack's data lives under TACT_RUN_DIR (.run): every topic and all Redis state,
# and a worker's local files (.run/worker by default).
reset: down
	rm -rf "$${TACT_RUN_DIR:-.run}"/kafka-* "$${TACT_RUN_DIR:-.run}"/redis-* .run/worker

demo: install
	@./deploy/stack.sh with-services $(VENV)/bin/tact demo --world

check: install lint typecheck
	@$(VENV)/bin/tact schemas export --check
	@./deploy/compose-check.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check app agents schemas tests benchmarks
	$(VENV)/bin/ruff format --check app agents schemas tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format app agents schemas tests benchmarks
	$(VENV)/bin/ruff check --fix app agents schemas tests benchmarks

# The unit tests run in parallel (pytest-xdist, one worker per CPU the system reports;
# TEST_WORKERS=0 runs them in this process), before the services start, since they need none.
# The integration tests share one broker and one Redis; they run one module at a time.
# INTEGRATION_WORKERS=2 runs two modules at a time (each module in one worker, so a module's
# own cluster, test_secured.py, starts once): about 40% faster, but not the default, since a
# CI run with it failed twice (a refused SASL login slower than its client's timeout under
# the load; test_rebalance's second worker's status port, its first's + 1, taken by the other
# module's worker).
TEST_WORKERS ?= logical
INTEGRATION_WORKERS ?= 0
INTEGRATION := tests/integration -n $(INTEGRATION_WORKERS) --dist loadfile

test: check
	$(PY) -m pytest tests/unit -n $(TEST_WORKERS) --dist worksteal
	@./deploy/stack.sh with-services $(PY) -m pytest $(INTEGRATION)

test-unit: $(STAMP) compiled
	$(PY) -m pytest tests/unit -n $(TEST_WORKERS) --dist worksteal

test-integration: install
	@./deploy/stack.sh with-services $(PY) -m pytest $(INTEGRATION)

bench: install
	@./deploy/stack.sh with-services $(PY) -m benchmarks

schemas: $(STAMP)
	$(VENV)/bin/tact schemas export

clean:
	rm -rf $(VENV) .compiled .compiled.new .compiled.old .run .pytest_cache .mypy_cache .ruff_cache *.egg-info
