# gpalloc developer tasks. Every target bootstraps $(VENV) on first use.
#   make test       lint + unit tests + live-kernel tests + notebook regression tests (nbval)
#   make live       the live-kernel tests only (Linux; root for tracefs; skip elsewhere)
#   make lab        JupyterLab on notebooks/
#   make bench      python -m benchmarks
#   make notebooks  re-execute notebooks/*.ipynb in place, in name order
#   make lint       ruff check
#   make clean      remove the venv and caches

PY ?= python3
VENV ?= .venv

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Lint only the source trees that exist (benchmarks/ may not yet).
LINT_PATHS := $(wildcard gpalloc tests benchmarks)
PIP_FLAGS := --no-input $(if $(CI),--progress-bar off)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: venv lab test lint unit live nbval bench notebooks clean

# --- bootstrap ---------------------------------------------------------------

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-installs only when pyproject.toml is newer than the stamp (or the venv
# was just created), so repeated `make test` is fast.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

venv: $(STAMP)

# --- tasks --------------------------------------------------------------------

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

# Plain pytest: exit code 5 ("no tests collected") fails the build on purpose.
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Experiments on the running kernel (gpalloc.live); each test skips with its reason (-rs)
# where the kernel or the rights differ.
live: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m live --live tests

nbval: $(STAMP)
	@if compgen -G 'notebooks/*.ipynb' > /dev/null; then \
	  echo "$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/"; \
	  $(BIN)/python -m pytest -q --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/; \
	else \
	  echo "nbval: no notebooks/*.ipynb yet, skipping notebook tests"; \
	fi

# Sequential on purpose: lint, then unit tests, then the live kernel, then notebooks.
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory live
	$(MAKE) --no-print-directory nbval

bench: $(STAMP)
	$(BIN)/python -m benchmarks

notebooks: $(STAMP)
	@shopt -s nullglob; LC_ALL=C; \
	nbs=(notebooks/*.ipynb); \
	if [ $${#nbs[@]} -eq 0 ]; then echo "no notebooks/*.ipynb to execute"; exit 0; fi; \
	for nb in "$${nbs[@]}"; do \
	  echo "executing $$nb"; \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb"; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist tests/artifacts
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \
	  -o -name .ipynb_checkpoints \) -prune -exec rm -rf {} +
