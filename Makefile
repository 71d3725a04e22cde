# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore

.PHONY: run test install bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m ops.cli run

test: install
	$(PY) -m ops.testenv
	$(PY) -m pytest

bench: install
	$(PY) -m ops.testenv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data
