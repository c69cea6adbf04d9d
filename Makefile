# Two commands: `make run` sets up and starts berthd; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: setup run test lint bench fuzz clean

setup:
	bash scripts/setup.sh "$(PYTHON)" "$(VENV)"

run: setup
	$(BIN)/berthd $(ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	cd src && ../$(BIN)/lint-imports --config ../pyproject.toml

test: setup
	TEST_EXTRAS=1 bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	$(MAKE) lint
	$(BIN)/pytest -n 4 --dist loadfile $(ARGS)

# Longer fuzzing than CI's: many more examples, and schemathesis's example and coverage phases.
fuzz: setup
	TEST_EXTRAS=1 bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} FUZZ_FULL=1 $(BIN)/pytest -n 4 -p no:cacheprovider tests/fuzz $(ARGS)

bench: setup
	BENCH_EXTRAS=1 bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build src/*.egg-info
