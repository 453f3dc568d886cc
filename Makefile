# Quick start: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; pinning it first keeps pip from
# resolving a multi-GB CUDA build for the `torch>=` requirement in pyproject.toml.
TORCH_SPEC ?= torch==2.13.0
# One pytest-xdist worker per core (tests/conftest.py gives each worker one thread).
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test lint install install-dev clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/semireg demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

# The formatter and linter (ruff, configured in pyproject.toml); CI runs this before the tests.
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
