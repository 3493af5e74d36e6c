# gpalloc developer tasks. Every target bootstraps $(VENV) on first use.
#   make lab        JupyterLab on the student edition (runtime dependencies only)
#   make student    the student edition in $(STUDENT_DIR) (notebooks/ is the instructor's)
#   make dashboard  the Voila dashboard (runtime + workshop extra)
#   make site       the JupyterLite site in $(SITE_DIR) (runtime + workshop extra)
#   make test       lint + unit tests + live-kernel tests + notebook regression tests (nbval)
#                   + the student edition run top to bottom; installs the test and workshop extras
#   make live       the live-kernel tests only (Linux; root for tracefs; skip elsewhere)
#   make stateful-long / make fuzz-long  the long hypothesis budgets (nightly or by hand)
#   make wheel      the gpalloc wheel in $(WHEEL_DIR)
#   make bench      python -m benchmarks
#   make notebooks  re-execute notebooks/*.ipynb in place, in name order (no widget views saved)
#   make handout    the one-page workshop handout, $(HANDOUT) (gpalloc.viz.handout)
#   make regenerate every committed model output after a model change: goldens, data/results,
#                   notebooks, docs/handout.png; then lists prose quoting a changed number
#   make lint       ruff check
#   make clean      remove the venv, build outputs and caches
#
# Options: make lab LAB_ARGS="--port 9999 --no-browser"; make dashboard DASHBOARD_ARGS="--port
# 8866 --no-browser"; NO_INSTALL=1 runs a task with $(VENV) as it is (tests use it).

PY ?= python3
VENV ?= .venv
STUDENT_DIR ?= build/student
LAB_NOTEBOOKS ?= $(STUDENT_DIR)
LAB_ARGS ?=
DASHBOARD ?= dashboard/gpalloc-dashboard.ipynb
DASHBOARD_ARGS ?=
SITE_NOTEBOOKS ?= $(STUDENT_DIR)
SITE_DIR ?= build/site
SITE_ARGS ?=
WHEEL_DIR ?= build/wheels
HANDOUT ?= build/handout.png
NO_INSTALL ?=

BIN := $(VENV)/bin
# One venv, three install levels: students get the runtime dependencies only (make lab), the
# workshop extra adds Voila and JupyterLite, make test adds the test extra on top of both.
RUNTIME_STAMP := $(VENV)/.installed-runtime
WORKSHOP_STAMP := $(VENV)/.installed-workshop
TEST_STAMP := $(VENV)/.installed-test
needs = $(if $(NO_INSTALL),,$(1))
# JupyterLab refuses to run as root without --allow-root (Docker, cloud VMs).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# Lint only the source trees that exist (benchmarks/ may not yet).
LINT_PATHS := $(wildcard gpalloc tests benchmarks dashboard lite tools)
PIP_FLAGS := --no-input $(if $(CI),--progress-bar off)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: venv lab student student-test dashboard site wheel test lint unit live nbval bench \
  notebooks handout regenerate clean stateful-long fuzz-long

# --- bootstrap ---------------------------------------------------------------

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Each stamp re-installs only when pyproject.toml is newer (or the venv was just created), so
# repeated runs are fast; a fuller install also stamps the levels it contains.
$(RUNTIME_STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e .
	touch $@

$(WORKSHOP_STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[workshop]'
	touch $@ $(RUNTIME_STAMP)

$(TEST_STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test,workshop]'
	touch $@ $(WORKSHOP_STAMP) $(RUNTIME_STAMP)

venv: $(TEST_STAMP)

# --- tasks --------------------------------------------------------------------

# Student edition: solutions and explanations removed, answer code folded, outputs cleared
# (tools/editions.py); notebooks/ itself is the instructor edition.
student: $(call needs,$(RUNTIME_STAMP))
	$(BIN)/python tools/editions.py student $(STUDENT_DIR) > /dev/null

lab: student
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) $(LAB_NOTEBOOKS)

# The student edition must run top to bottom without errors (its outputs are not compared),
# and every exercise's Reveal must judge the model's own answer right (tests/test_exercises.py).
student-test: student $(call needs,$(TEST_STAMP))
	$(BIN)/python -m pytest -q -m student --student-edition tests/test_exercises.py

# Voila executes the dashboard notebook per visit; it shows committed results and computes on
# request, so the page paints in seconds.
dashboard: $(call needs,$(WORKSHOP_STAMP))
	$(BIN)/voila $(DASHBOARD_ARGS) $(DASHBOARD)

wheel: $(call needs,$(RUNTIME_STAMP))
	rm -rf $(WHEEL_DIR)
	$(BIN)/python -m pip wheel $(PIP_FLAGS) --no-deps -w $(WHEEL_DIR) .

# The site's Pyodide loads from its CDN at run time; SITE_ARGS=--local-pyodide (the browser
# test) serves a local core from the site instead: offline, but without numpy and matplotlib.
site: wheel student $(call needs,$(WORKSHOP_STAMP))
	$(BIN)/python lite/build.py --wheels $(WHEEL_DIR) --notebooks $(SITE_NOTEBOOKS) \
	  --output $(SITE_DIR) $(SITE_ARGS)

lint: $(call needs,$(TEST_STAMP))
	$(BIN)/ruff check $(LINT_PATHS)

# Plain pytest: exit code 5 ("no tests collected") fails the build on purpose.
unit: $(call needs,$(TEST_STAMP))
	$(BIN)/python -m pytest -q tests

# Experiments on the running kernel (gpalloc.live); each test skips with its reason (-rs)
# where the kernel or the rights differ.
live: $(call needs,$(TEST_STAMP))
	$(BIN)/python -m pytest -q -rs -m live --live tests

nbval: $(call needs,$(TEST_STAMP))
	@if compgen -G 'notebooks/*.ipynb' > /dev/null; then \
	  echo "$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/"; \
	  $(BIN)/python -m pytest -q --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/; \
	else \
	  echo "nbval: no notebooks/*.ipynb yet, skipping notebook tests"; \
	fi

# Sequential on purpose: lint, then unit tests, then the live kernel, then notebooks.
test: $(call needs,$(TEST_STAMP))
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory live
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory student-test

# The handout slide (WORKSHOP.md): four direct-map pictures computed from seeded machines;
# docs/handout.png is a committed copy.
handout: $(call needs,$(RUNTIME_STAMP))
	mkdir -p $(dir $(HANDOUT))
	$(BIN)/python -c 'import sys; from gpalloc import viz; viz.handout(sys.argv[1])' $(HANDOUT)
	@echo "wrote $(HANDOUT)"

# One command for every committed output a model change moves (tools/regenerate.py).
regenerate: $(call needs,$(RUNTIME_STAMP))
	$(BIN)/python tools/regenerate.py

# The long hypothesis budgets (tests/hypothesis_profile.py), randomised, for a nightly or
# manual run; -rP prints each test's step or example count.
stateful-long: $(call needs,$(TEST_STAMP))
	GPALLOC_TEST_PROFILE=long $(BIN)/python -m pytest -q -rP tests/test_stateful.py

fuzz-long: $(call needs,$(TEST_STAMP))
	GPALLOC_TEST_PROFILE=long $(BIN)/python -m pytest -q -rP tests/test_fuzz_parsers.py

bench: $(call needs,$(RUNTIME_STAMP))
	$(BIN)/python -m benchmarks

notebooks: $(call needs,$(RUNTIME_STAMP))
	@shopt -s nullglob; LC_ALL=C; \
	nbs=(notebooks/*.ipynb); \
	if [ $${#nbs[@]} -eq 0 ]; then echo "no notebooks/*.ipynb to execute"; exit 0; fi; \
	for nb in "$${nbs[@]}"; do \
	  echo "executing $$nb"; \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.store_widget_state=False "$$nb"; \
	  $(BIN)/python tools/editions.py instructor "$$nb"; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist tests/artifacts
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \
	  -o -name .ipynb_checkpoints -o -name .jupyterlite.doit.db \) -prune -exec rm -rf {} +
