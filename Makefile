# make demo: the main job.  make test: the whole test suite (slow end-to-end tests included).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Test processes (pytest-xdist): one per core. Each test file runs whole in one process (tests in a
# file share fixtures and, for the Ray tests, one cluster at a time).
TEST_WORKERS ?= auto

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,wandb]'
	touch $@

demo: install
	$(BIN)/scaling demo

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
