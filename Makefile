# Canvas-Verse backend — the commands people type. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
# VENV=/path/to/venv uses another environment; SKIP_INSTALL=1 uses it as it is, never installing
# into it (a CI cache, or the test suite's own environment linked into a fresh clone).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ifeq ($(SKIP_INSTALL),1)
INSTALLED :=
else
INSTALLED := $(STAMP)
endif

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev and bench tools

run: $(INSTALLED) ## Run the whole system locally (SQLite + the project's own Redis); Ctrl-C stops it
	$(PY) -m devtools.run

migrate: $(INSTALLED) ## Apply the database migrations (AUTH_DATABASE_URL / CANVAS_DATABASE_URL)
	$(PY) -m devtools.migrate

backup: $(INSTALLED) ## Copy make run's SQLite databases (consistently, while running) to data/backups/<time>
	$(PY) -m devtools.backup

test: $(INSTALLED) ## Run the test suite on SQLite, then on PostgreSQL when it is reachable
	$(PY) -m pytest
	@TEST_DB=postgres $(PY) -m devtools.pgcheck; rc=$$?; \
	if [ $$rc -eq 0 ]; then TEST_DB=postgres $(PY) -m pytest -m "not sqlite_only"; \
	elif [ $$rc -eq 2 ]; then exit 2; \
	else echo "PostgreSQL not reachable: skipped the PostgreSQL run (REQUIRE_POSTGRES=1 makes this fail)"; fi

test-sqlite: $(INSTALLED) ## Run the test suite on SQLite only
	$(PY) -m pytest

test-postgres: $(INSTALLED) ## Run the test suite on PostgreSQL only (TEST_POSTGRES_URL)
	TEST_DB=postgres $(PY) -m pytest -m "not sqlite_only"

test-resilience: $(INSTALLED) ## Run only the resilience, fault and security suite (SQLite, then PostgreSQL if reachable)
	$(PY) -m pytest -m resilience
	@TEST_DB=postgres $(PY) -m devtools.pgcheck; rc=$$?; \
	if [ $$rc -eq 0 ]; then TEST_DB=postgres $(PY) -m pytest -m "resilience and not sqlite_only"; \
	elif [ $$rc -eq 2 ]; then exit 2; \
	else echo "PostgreSQL not reachable: skipped the PostgreSQL fault run (REQUIRE_POSTGRES=1 makes this fail)"; fi

test-compose: $(INSTALLED) ## Build the image and drive docker-compose.yml under Docker (needs a running Docker)
	COMPOSE_TEST=1 $(PY) -m pytest tests/compose -x

lint: $(INSTALLED) ## Ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(INSTALLED) ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(INSTALLED) ## Run the benchmarks and write bench/REPORT.md
	$(PY) -m bench

clean: ## Remove the virtualenv, caches, build leftovers and local data (./data)
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist data *.egg-info
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +

.PHONY: help install run migrate backup test test-sqlite test-postgres test-resilience test-compose lint format bench clean
