# The two commands: `make run` and `make test`. Each does all of its own setup.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite lint bench venv deps dev-deps migrate check-postgres browser pgbouncer gettext messages makemessages clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# A stamp per requirements file: reinstall only when the pins change.
$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

## make run: migrate (SQLite unless DATABASE_URL is set), seed demo data, start
## the web server, one call worker and the django-q2 cluster. Ctrl-C stops all.
run: export DJANGO_DEBUG ?= true
run: export PYTHONUNBUFFERED = 1
run: deps messages
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	PATH="$(abspath $(BIN)):$$PATH" HOST=$(HOST) PORT=$(PORT) $(BIN)/honcho -f Procfile start

## make test: ruff, mypy, the import layers (lint-imports), then pytest against
## PostgreSQL (DATABASE_URL, or the local server at 127.0.0.1:5432), then the
## service and worker tests again on SQLite (test-sqlite).
test: dev-deps check-postgres browser pgbouncer messages
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache
	$(PY) manage.py makemigrations --check --dry-run --settings=callcenter.settings_test
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-sqlite

# The service and worker tests on SQLite, the database `make run` starts with:
# a file database (WAL, IMMEDIATE transactions, as `make run` has), skipping the
# tests marked postgres_only (SKIP LOCKED, PostgreSQL's clock, EXPLAIN, pinned
# statement counts). The SQLite worker subprocess test runs in the main run.
SQLITE_TESTS := accounts/tests/test_credits.py accounts/tests/test_credits_extend.py \
  accounts/tests/test_credits_events.py accounts/tests/test_credits_many.py \
  batches/tests/test_services.py batches/tests/test_completion.py \
  jobs/tests/test_services.py jobs/tests/test_lifecycle.py jobs/tests/test_worker.py \
  jobs/tests/test_claim.py jobs/tests/test_imports.py jobs/tests/test_scheduled.py \
  jobs/tests/test_record_call_fast.py jobs/tests/test_pacing.py
test-sqlite: dev-deps messages
	@mkdir -p test-artifacts
	DATABASE_URL=sqlite:///$(CURDIR)/test-artifacts/sqlite.sqlite3 $(BIN)/pytest $(SQLITE_TESTS)

lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

check-postgres: dev-deps
	@DJANGO_SETTINGS_MODULE=callcenter.settings_test $(PY) -m callcenter.checkdb

# The admin browser test drives Debian's Chromium through Playwright.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else \
	    echo "WARNING: /usr/bin/chromium is missing; browser tests will be skipped."; \
	  fi; \
	fi

# The concurrency and pause tests run a second time through Debian's
# PgBouncer in transaction mode (the `pgbouncer` marker; conftest.py).
pgbouncer:
	@if [ ! -x /usr/sbin/pgbouncer ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's pgbouncer for the pooler tests..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer) >/dev/null; \
	    systemctl disable --now pgbouncer >/dev/null 2>&1 || true; \
	  else \
	    echo "WARNING: /usr/sbin/pgbouncer is missing; the PgBouncer tests will be skipped."; \
	  fi; \
	fi

# Translations: the .po catalogues in locale/ are kept in the repo; the .mo
# files Django reads are built from them (git-ignored). msgfmt is Debian's gettext.
gettext:
	@if ! command -v msgfmt >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's gettext for the translations..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext) >/dev/null; \
	  else \
	    echo "ERROR: msgfmt is missing: install gettext (apt-get install gettext)."; exit 1; \
	  fi; \
	fi

messages: deps gettext
	@DJANGO_SETTINGS_MODULE=callcenter.settings_test $(PY) manage.py compilemessages -v 0

## make makemessages: refresh locale/*/django.po from the code, then translate
## the new entries of locale/es (make test fails while any is untranslated).
makemessages: deps gettext
	DJANGO_SETTINGS_MODULE=callcenter.settings_test $(PY) manage.py makemessages \
	  -l es -l en --no-obsolete --no-location -i ".venv/*" -i "bench/*" -i "test-artifacts/*" -i "static/*"

bench: dev-deps check-postgres
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
