# zarrgeno: one entry point for set-up, the demo and the tests.
# `make demo` and `make test` work on a fresh clone: they create .venv and install into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STORE  ?= data/AG1000G-AO
PYTEST_ARGS ?=
# Test processes of `make test` (pytest-xdist); a test file runs whole in one of them, so
# its module fixtures (servers, emulators, reference stores) are made once.
TEST_WORKERS ?= 2
# What ruff checks and formats.
LINT_PATHS := zarrgeno tests benchmarks conftest.py
# A second venv with the lowest dependency versions pyproject.toml allows (`make lowest`).
LOWEST ?= .venv-lowest
# Oracle venvs (.ci/oracle-venv), each from its pinned .ci/NAME-requirements.txt. A third venv
# with zarr-python 3, bio2zarr and vcztools (`make zarr3-venv`): the tests read back with them
# what zarrgeno writes in Zarr format 3 (they need zarr>=3.1; zarrgeno is on zarr 2.18). A
# fourth with sgkit (`make sgkit-venv`), which needs zarr<3 and numba: the tests check the QC
# statistics against its own. `make test` passes their interpreters to the tests in
# ZARRGENO_ZARR3_PYTHON and ZARRGENO_SGKIT_PYTHON.
ZARR3 ?= .venv-zarr3
ZARR3_STAMP := $(ZARR3)/.installed-stamp
SGKIT ?= .venv-sgkit
SGKIT_STAMP := $(SGKIT)/.installed-stamp

.PHONY: install demo test check lint format-check typecheck imports doctest lowest \
	system-deps bench clean reliability zarr3-venv sgkit-venv

# The runtime with the plot extra: what `make demo` needs.
DEMO_STAMP := $(VENV)/.demo-stamp
# Debian packages the tests use: Graphviz's `dot` draws `stats --visualize` graphs; plink2
# and bcftools are the reference tools the counts are checked against.
SYSTEM_PACKAGES := graphviz plink2 bcftools
SYSTEM_COMMANDS := dot plink2 bcftools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $(DEMO_STAMP)

install: $(STAMP)

# Installed with apt-get when we are root on Debian (CI, fresh machines), saying so;
# elsewhere the tests that need them are skipped.
system-deps:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages for the tests with apt-get: $(SYSTEM_PACKAGES)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null) \
	      || echo "note: could not install $(SYSTEM_PACKAGES); the tests that need them will be skipped"; \
	  else echo "note: $(SYSTEM_PACKAGES) are not all installed; the tests that need them will be skipped"; fi; \
	fi

demo: $(DEMO_STAMP)
	@test -e $(STORE) || $(BIN)/zarrgeno simulate $(STORE)
	$(BIN)/zarrgeno info $(STORE) --summary
	$(BIN)/zarrgeno stats $(STORE)

# The static checks and doctests run first: they take seconds and fail before the long suite.
test: $(STAMP) system-deps check lowest zarr3-venv sgkit-venv
	ZARRGENO_ZARR3_PYTHON=$(abspath $(ZARR3))/bin/python \
	ZARRGENO_SGKIT_PYTHON=$(abspath $(SGKIT))/bin/python $(BIN)/python -m pytest \
	  -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# ruff, ruff format, mypy, import-linter's layer contracts and the doctests; also what
# .pre-commit-config.yaml runs (without the doctests).
check: lint format-check typecheck imports doctest

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

format-check: $(STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy zarrgeno

# Contracts in pyproject.toml [tool.importlinter]: cli > stats|rewrite|download|simulate >
# io|runtime > chunkgrid|sizes|render > errors, and stats.api above stats.backends.
imports: $(STAMP)
	$(BIN)/lint-imports

# The docstring examples of the package and the `>>>` examples of docs/*.md (docs/api.md).
doctest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -o testpaths= \
	  --doctest-modules zarrgeno --doctest-glob='*.md' docs

# Install the lowest versions of the runtime dependencies that pyproject.toml allows into a
# fresh venv and run the CLI on a tiny store: a lower bound that is too low fails here.
lowest: $(STAMP)
	VENV=$(LOWEST) PYTHON=$(PYTHON) UV=$(BIN)/uv sh .ci/lowest

# Built once, and again when their requirements change; uv comes from the `test` extra.
ORACLE_VENV := PYTHON=$(PYTHON) UV=$(BIN)/uv sh .ci/oracle-venv

$(ZARR3_STAMP): .ci/zarr3-requirements.txt .ci/oracle-venv | $(STAMP)
	VENV=$(ZARR3) REQUIREMENTS=$< IMPORTS="zarr numcodecs bio2zarr vcztools" \
	  TOOLS="vcf2zarr vcztools" $(ORACLE_VENV)

zarr3-venv: $(ZARR3_STAMP)

$(SGKIT_STAMP): .ci/sgkit-requirements.txt .ci/oracle-venv | $(STAMP)
	VENV=$(SGKIT) REQUIREMENTS=$< IMPORTS="sgkit zarr xarray dask numba" $(ORACLE_VENV)

sgkit-venv: $(SGKIT_STAMP)

# The figures of docs/reliability.md: hostile-input and fault-injection cases and outcomes.
reliability: $(STAMP) system-deps
	CI=true $(BIN)/python -m pytest -m "hostile or fault" --reliability-report $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_stats.py
	$(BIN)/python benchmarks/bench_rechunk.py

clean:
	rm -rf $(VENV) $(LOWEST) $(ZARR3) $(SGKIT) .pytest_cache .mypy_cache .import_linter_cache .hypothesis build *.egg-info
