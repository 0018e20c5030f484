# ownercare: `make run` and `make test` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP_VERSION := 26.0.1
RUN_ARGS ?= --vehicles 20 --chargers 4 --speed 3600 --faults weak_12v:3,dtc:2

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit prereqs prereqs-unit lint fmt lock reset clean vss-catalogue

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[embedded,postgres,bench]' --group dev
	touch $@

install: $(STAMP) ## Create .venv and install ownercare with the embedded brokers and dev tools

# RESUME=1: continue on the state an earlier run left in .ownercare (default: move it aside).
run: $(STAMP) ## Start the whole service on the embedded stack with a simulated fleet
	$(VENV)/bin/ownercare run $(RUN_ARGS)$(if $(RESUME), --resume)

# The servers checked first, before .venv is built: a missing one fails in a second.
# Two passes: everything outside tests/end_to_end on both cores (each file on one xdist
# worker: a file's fixtures start its brokers once), then the end-to-end runs one at a time,
# because each already drives a whole stack across both cores. Exit code 5 is "no tests".
PYTEST_PARALLEL ?= -n 2 --dist loadfile
test: prereqs $(STAMP) ## Run the whole test suite (unit + real brokers + end to end)
	$(PY) -m pytest $(PYTEST_PARALLEL) --ignore=tests/end_to_end $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; \
	  $(PY) -m pytest tests/end_to_end $(PYTEST_ARGS); rc2=$$?; \
	  if [ $$rc2 -eq 5 ]; then echo "no end-to-end tests collected"; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$rc2

test-unit: prereqs-unit $(STAMP) ## The fast subset: no real brokers, no long property runs
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

prereqs: ## Check the Debian packages the tests run as servers (as root: install them)
	@bash scripts/check-prereqs.sh all

prereqs-unit:
	@bash scripts/check-prereqs.sh unit

lint: $(STAMP) ## ruff, mypy (strict, every package) and the layer contracts (lint-imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP) ## Fix what ruff can fix (imports, idioms) in place
	$(VENV)/bin/ruff check --fix .

lock: ## Re-pin every dependency into constraints.txt (needs network access to PyPI)
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet pip==$(PIP_VERSION)
	.lockenv/bin/pip install --quiet -e '.[embedded,postgres,bench]' --group dev
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^ownercare' > constraints.txt
	rm -rf .lockenv

# The signal catalogue from the COVESA VSS spec (MPL-2.0) at VSS_RELEASE, exported by vss-tools
# in a throwaway environment; VSS_REPO is a clone of the spec (e.g. what `fetch` brings).
VSS_RELEASE ?= v6.0
VSS_TOOLS ?= 6.0.0
VSS_REPO ?= ../vehicle_signal_specification
vss-catalogue: ## Regenerate ingest/vss/vss.json from the VSS spec (VSS_REPO, VSS_RELEASE)
	rm -rf .vssenv .vssspec && $(PYTHON) -m venv .vssenv && mkdir .vssspec
	.vssenv/bin/pip install --quiet vss-tools==$(VSS_TOOLS)
	git -C $(VSS_REPO) archive $(VSS_RELEASE) | tar -x -C .vssspec
	$(PYTHON) scripts/gen_vss_catalogue.py --spec .vssspec --release $(VSS_RELEASE) \
		--out ingest/vss/vss.json --vspec .vssenv/bin/vspec
	rm -rf .vssenv .vssspec

reset: ## Forget the local state of `make run` (keeps .venv)
	rm -rf .ownercare .ownercare.old-* .ownercare-bench

clean: reset ## Remove the virtual environment and local state
	rm -rf $(VENV) .pytest_cache
