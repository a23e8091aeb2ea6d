# Two commands for a new user (only Python 3.10+ and make needed):
#   make demo   runs the example DAGs against the bundled local emulator
#   make test   runs the test suite
PYTHON       ?= python3
VENV         ?= .venv
AIRFLOW_SPEC ?= apache-airflow>=3.1,<4
EXTRAS       ?= test,lint
PYTEST_ARGS  ?=
# make bench: bench/results.md + bench/results.png (~10 min); BENCH_ARGS=--smoke for a quick run
BENCH_ARGS   ?=
comma        := ,
BIN          := $(VENV)/bin
STAMP        := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[$(EXTRAS)]" "$(AIRFLOW_SPEC)" \
		|| $(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" "$(AIRFLOW_SPEC)"
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
