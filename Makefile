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

# Three pytest processes, each taking whole files (a module's Redis and engine stay in one process):
# the tests mostly wait on real engines, agents and Redis, so three share two cores well.
PYTEST_WORKERS ?= 3

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

bench: install
	$(PY) -m tests.bench

up: install
	$(VENV)/bin/converge up

clean:
	rm -rf .converge build dist *.egg-info
