# The two quick-start commands: `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-remote lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lanes demo

lint: $(STAMP)
	$(BIN)/ruff check lanes integrator tests bench
	$(BIN)/ruff format --check lanes integrator tests bench
	$(BIN)/mypy

# The suite with the inbox (every test), then the coordination core again with a git remote
# (the fixture parameter, docs/testing.md); `make test-remote` runs every test with the
# remote (about eleven minutes more). Two workers.
REMOTE_CORE := tests/test_submit.py tests/test_submit_worktree.py tests/test_fragments.py \
	tests/test_gc.py tests/test_integrate.py tests/test_gate_wave.py tests/test_ledger.py \
	tests/test_plan.py tests/test_postmortem.py

test: lint
	$(BIN)/pytest -q -n 2
	LANES_TEST_COORD=remote $(BIN)/pytest -q -n 2 $(REMOTE_CORE)

test-remote: $(STAMP)
	LANES_TEST_COORD=remote $(BIN)/pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python bench/run.py

docs: $(STAMP)
	$(BIN)/python -m lanes.cli.reference > docs/reference.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
