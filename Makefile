# Two commands for a new user (only Python 3.11+ and make needed):
#   make demo   runs the example DAGs against the bundled local emulator
#   make test   runs the test suite
PYTHON       ?= python3
# PYTHON_VERSION=3.12: build the virtualenv with that Python, found as python3.12 on PATH or
# under pyenv (PYENV_ROOT, default ~/.pyenv); stops with an error when it is not there.
PYTHON_VERSION ?=
VENV         ?= .venv
# Empty: only what pyproject.toml declares.
AIRFLOW_SPEC ?= apache-airflow>=3.1,<4
EXTRAS       ?= test,lint
# RESOLUTION=lowest-direct: the lowest declared version of every direct dependency (uv --resolution)
RESOLUTION   ?=
PYTEST_ARGS  ?=
# make bench: bench/results.md + bench/results.png (~10 min); BENCH_ARGS=--smoke for a quick run
BENCH_ARGS   ?=
comma        := ,
BIN          := $(VENV)/bin
STAMP        := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))$(if $(RESOLUTION),-$(RESOLUTION))

ifneq ($(PYTHON_VERSION),)
PYENV_ROOT   ?= $(HOME)/.pyenv
# A candidate counts only if it runs and is that version (a pyenv shim may exist and refuse to run).
PYTHON       := $(firstword $(foreach candidate,python$(PYTHON_VERSION) \
	$(sort $(wildcard $(PYENV_ROOT)/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION))),\
	$(shell $(candidate) -c 'import sys; print(sys.executable) if "%d.%d" % sys.version_info[:2] == "$(PYTHON_VERSION)" else None' 2>/dev/null)))
ifeq ($(PYTHON),)
$(error Python $(PYTHON_VERSION) not found: no working python$(PYTHON_VERSION) on PATH or in $(PYENV_ROOT)/versions)
endif
endif

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
# With RESOLUTION, resolved afresh (--upgrade: what the virtualenv already holds does not count)
# and no pip fallback (pip cannot resolve to the lowest versions).
ifneq ($(RESOLUTION),)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --resolution $(RESOLUTION) --upgrade \
		-e ".[$(EXTRAS)]" $(if $(AIRFLOW_SPEC),"$(AIRFLOW_SPEC)")
else
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[$(EXTRAS)]" $(if $(AIRFLOW_SPEC),"$(AIRFLOW_SPEC)") \
		|| $(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" $(if $(AIRFLOW_SPEC),"$(AIRFLOW_SPEC)")
endif
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench:
	$(MAKE) install EXTRAS=test,lint,bench
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .venv .venv-* .demo build dist *.egg-info

# make e2e: a real deployment on this machine (PostgreSQL, the emulator, Airflow's own
# scheduler, triggerer, API server ... with LocalExecutor) runs the example DAGs and the
# tests/e2e suite (a few minutes), in a virtualenv of its own. On Airflow 2.11:
#   make e2e E2E_VENV=.venv-e2e-af2 E2E_AIRFLOW_SPEC="apache-airflow[postgres]>=2.11,<2.12"
E2E_VENV         ?= .venv-e2e
E2E_AIRFLOW_SPEC ?= apache-airflow[postgres]>=3.1,<4
E2E_ARGS         ?=

.PHONY: e2e
e2e:
	$(MAKE) install VENV=$(E2E_VENV) AIRFLOW_SPEC="$(E2E_AIRFLOW_SPEC)" EXTRAS=test
	DATAQC_E2E=1 $(E2E_VENV)/bin/python -m pytest tests/e2e -p no:cacheprovider -o timeout=1200 $(E2E_ARGS)
