# Tollgate: `make run` to try it, `make test` to check it. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check -q
MANAGE := $(PY) -m tollgate
STAFF_EMAIL ?= admin@example.com

.PHONY: run cluster staff-password test lint typecheck checks alert-rules pytest bench install install-dev browser-deps lock clean help

help:
	@echo "make run    install, migrate, load demo plans, start web + worker on http://127.0.0.1:8000"
	@echo "            (PORT=8080 make run: another port; DEBUG=true make run: Django's debug pages)"
	@echo "make cluster  the production topology on this machine: nginx on :8080, two web processes,"
	@echo "            two workers, on PostgreSQL and Redis (CLUSTER_DATABASE_URL, CLUSTER_REDIS_URL); Ctrl-C stops"
	@echo "make staff-password  set and show a new password for the staff user ($(STAFF_EMAIL))"
	@echo "make test   install dev tools, lint, type-check, deployment checks and the test suite"
	@echo "make bench  run the benchmarks and write docs/benchmarks.md"
	@echo "            (TOLLGATE_BENCH_CUSTOMERS=100000 make bench: a smaller dataset for the hot queries)"

$(BIN)/activate:
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.runtime: $(BIN)/activate requirements/runtime.lock pyproject.toml
	$(PIP) install --require-hashes -r requirements/runtime.lock
	$(PIP) install --no-deps -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.lock
	$(PIP) install --require-hashes -r requirements/dev.lock
	@touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	TOLLGATE_ENV=development $(MANAGE) migrate --no-input -v 0
	TOLLGATE_ENV=development $(MANAGE) catalog_load demo
	TOLLGATE_ENV=development $(MANAGE) staff_bootstrap --email $(STAFF_EMAIL)
	TOLLGATE_ENV=development $(MANAGE) serve

# nginx (Debian's, installed by scripts/ensure-nginx when missing) in front of two web processes and
# two workers on PostgreSQL + Redis; `kill -HUP <pid>` restarts the web processes one by one.
cluster: install
	@bash scripts/ensure-nginx
	$(PY) deploy/local_cluster.py

staff-password: install
	TOLLGATE_ENV=development $(MANAGE) migrate --no-input -v 0
	TOLLGATE_ENV=development $(MANAGE) staff_bootstrap --email $(STAFF_EMAIL) --reset-password

# Production-like settings for the deployment checks (values are throwaway, generated per run).
PROD_ENV = TOLLGATE_ENV=production DEBUG=false ALLOWED_HOSTS=tollgate.example.com \
	TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION=true \
	TOLLGATE_SITE_URL=https://tollgate.example.com REDIS_URL=redis://127.0.0.1:6379/0 \
	DATABASE_URL=postgres://tollgate@127.0.0.1:5432/tollgate \
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	TOLLGATE_METRICS_TOKEN=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))')

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install-dev
	TOLLGATE_ENV=test $(BIN)/mypy

checks: install-dev
	@mkdir -p var
	$(PROD_ENV) $(MANAGE) check --deploy --fail-level WARNING
	TOLLGATE_ENV=test $(MANAGE) makemigrations --check --dry-run

browser-deps:
	@bash scripts/ensure-chromium

# The Prometheus alert rules: syntax, and their unit tests (each alert firing and not firing).
alert-rules:
	@bash scripts/ensure-promtool
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules deploy/prometheus/alerts.yml && \
		promtool test rules deploy/prometheus/alerts_test.yml; \
	else echo "promtool missing: alert rules not checked"; fi

pytest: install-dev browser-deps
	TOLLGATE_ENV=test $(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

test: lint typecheck checks alert-rules pytest

bench: install-dev
	$(PY) bench/run.py

# Re-resolve the lock files after changing dependencies in pyproject.toml.
lock: $(BIN)/activate
	$(PIP) install uv
	cd requirements && ../$(BIN)/uv pip compile ../pyproject.toml -q --python-version 3.11 --generate-hashes -o runtime.lock
	cd requirements && ../$(BIN)/uv pip compile ../pyproject.toml -q --extra dev --python-version 3.11 --generate-hashes -o dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage
