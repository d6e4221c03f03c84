# Everyday commands. `make test` is what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install lint test bench up clean

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m tests.bench

up: install
	$(VENV)/bin/converge up

clean:
	rm -rf .converge build dist *.egg-info
