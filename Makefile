# `make run`: set up (once) and start the app; `make test`: set up (once) and run lint + all tests.
# Set-up = the pinned packages in .venv + the real default library built from reference_db/ (once).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEFAULT_LIBRARY := reference_db/bold_library/CURRENT

.PHONY: run test lint bench

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(DEFAULT_LIBRARY): $(STAMP) reference_db/bold_model/config.json reference_db/bold/bold_insects_dev.tsv.gz
	$(PY) -m clibd_core.cli build-default
	touch $(DEFAULT_LIBRARY)

run: $(DEFAULT_LIBRARY)
	$(PY) app.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint $(DEFAULT_LIBRARY)
	sh tools/system-packages.sh
	$(PY) -m pytest -q -rs

bench: $(STAMP)
	$(PY) bench/embedding_throughput.py
