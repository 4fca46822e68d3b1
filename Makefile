# gridsim: `make run` and `make test` set everything up in .venv from the package registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup bench bench-se bench-dopf bench-market bench-audit bench-flagship runner clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/gridsim run scenarios/ieee123.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/federation_overhead.py

bench-se: $(STAMP)
	$(BIN)/python bench/state_estimation.py

bench-dopf: $(STAMP)
	$(BIN)/python bench/dopf.py
	$(BIN)/python bench/dopf_peer.py

bench-market: $(STAMP)
	$(BIN)/python bench/market.py

bench-flagship: $(STAMP)
	$(BIN)/python bench/flagship.py

bench-audit: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/audit.py

# Regenerate the top-level runner.json (a test checks it is in sync).
runner: $(STAMP)
	$(BIN)/gridsim runner scenarios/ieee123.yaml > runner.json

clean:
	rm -rf $(VENV) runs build .pytest_cache
