# `make run`: set up (once) and start the app; `make test`: set up (once) and run lint + all tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) app.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	sh tools/system-packages.sh
	$(PY) -m pytest -q -rs

bench: $(STAMP)
	$(PY) bench/embedding_throughput.py
