# Headwater — set-up and everyday commands. `make demo` and `make test` work from a clean clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
FAKESNOW_VENV := .venv-fakesnow
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install fakesnow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

# fakesnow pins its own duckdb, so it lives in a virtual environment of its own.
$(FAKESNOW_VENV)/bin/fakesnow:
	$(PYTHON) -m venv $(FAKESNOW_VENV)
	$(FAKESNOW_VENV)/bin/pip install --quiet --upgrade pip
	$(FAKESNOW_VENV)/bin/pip install --quiet 'fakesnow[server]==0.12.1' 'snowflake-connector-python>=4,<5'

fakesnow: $(FAKESNOW_VENV)/bin/fakesnow

demo: $(STAMP)
	$(VENV)/bin/headwater demo --dir headwater-demo

# The suite runs in TEST_WORKERS processes (pytest-xdist); each starts its own test servers
# (moto, fakesnow, tansu) and every test isolates its data (temp dirs, fresh schemas, prefixes).
TEST_WORKERS ?= 2
test: $(STAMP) fakesnow
	HEADWATER_FAKESNOW_BIN=$(CURDIR)/$(FAKESNOW_VENV)/bin/fakesnow $(PY) -m pytest -n $(TEST_WORKERS)

bench: $(STAMP)
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(FAKESNOW_VENV) headwater-demo .headwater .pytest_cache
