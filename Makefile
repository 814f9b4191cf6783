# lexgpt: `make run` runs the whole pipeline, `make test` runs the tests.
# Both create .venv and install the project on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The system interpreter, looked up before the venv goes first on PATH below.
SYSTEM_PYTHON := $(shell command -v python3)
PYTHON ?= $(SYSTEM_PYTHON)
export DAGSTER_HOME ?= $(CURDIR)/.dagster
# The venv's scripts (dagster, mlflow, uvicorn) first on PATH, without activating it.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install install-dev run test test-slow test-all ui mlflow-ui bench clean-state

# `make run` installs what the pipeline needs; `make test` adds the dev extras on top,
# among them llama-cpp-python, which builds llama.cpp from source (minutes on 2 cores):
# a fresh machine's `make run` must not pay for a test dependency.
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# A torch already on the machine (a GPU box) is reused through system site packages;
# otherwise torch 2.13.0 is installed first so the project's torch range resolves to it.
$(VENV)/.installed: pyproject.toml
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# make run MINUTES=2: a short first run (the training budget; default: the preset's 8 minutes)
run: install
	$(VENV)/bin/lexgpt run $(if $(MINUTES),--minutes $(MINUTES))

test: install-dev
	$(PY) -m pytest -q -m "not slow"

test-slow: install-dev
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]

test-all: install-dev
	$(PY) -m pytest -q

ui: install
	$(VENV)/bin/lexgpt ui

mlflow-ui: install
	$(VENV)/bin/lexgpt mlflow-ui

bench: install-dev
	$(PY) bench/ingest.py
	$(PY) bench/tokenizer.py
	$(PY) bench/train.py
	$(PY) bench/generate.py

clean-state:
	rm -rf data_lake/*/ .dagster/storage .dagster/history .dagster/schedules mlruns/mlflow.db mlruns/artifacts
