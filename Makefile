# Two entry points: `make demo` and `make test`. Each builds .venv itself from pinned versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: demo test install install-dev lint docs clean

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/attnmel demo --output demo-output

test: install-dev
	$(PY) -m pytest

lint: install-dev
	$(PY) -m ruff check src tests benchmarks

# the documentation site into site/ (tests/test_docs.py builds it too, into a temporary folder)
docs: install-dev
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) demo-output runs build site *.egg-info
