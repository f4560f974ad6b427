# Everyday commands. `make demo` and `make test` work on a fresh machine: they create
# .venv and install the project (with its dev extras) under constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Locally `make test` skips the slow drills; CI (CI=true) runs every drill.
FAST_ONLY := $(if $(filter true,$(CI)),,-m "not slow")

.PHONY: install demo example test test-all bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/divsweep run configs/demo.yaml

# Your own model and data (README): a project of its own, run from its folder, where its
# package imports from
example: $(STAMP)
	cd examples/own_model && ../../$(BIN)/python -m bitrules.tasks tasks.parquet \
		&& ../../$(BIN)/divsweep run sweep.yaml

# Exit code 5 (no tests collected) is not a failure.
test: $(STAMP)
	bash scripts/test-setup.sh
	$(BIN)/pytest $(FAST_ONLY) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: $(STAMP)
	bash scripts/test-setup.sh
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .divsweep reports mlflow.db mlruns .pytest_cache
