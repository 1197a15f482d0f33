# `make run`: set up (once) and start the app; `make test`: set up (once) and run lint + all tests.
# Set-up = the pinned packages in .venv + the real default library built from reference_db/ (once).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench default-library

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Checked every time (a second when current): rebuilt when the model, the source or the library format changed.
default-library: $(STAMP)
	$(PY) -m clibd_core.cli build-default

run: default-library
	$(PY) app.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint default-library
	sh tools/system-packages.sh
	$(PY) -m pytest -q -rs --durations=25 -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) bench/embedding_throughput.py
