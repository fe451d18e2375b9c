# zarrgeno: one entry point for set-up, the demo and the tests.
# `make demo` and `make test` work on a fresh clone: they create .venv and install into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STORE  ?= data/AG1000G-AO
PYTEST_ARGS ?=

.PHONY: install demo test system-deps bench lint clean reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Graphviz's `dot` draws `stats --visualize` graphs. It is a system package: installed here
# when we are root with apt-get (CI, fresh machines); elsewhere its test is skipped.
system-deps:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	      || echo "note: could not install graphviz; --visualize tests will be skipped"; \
	  else echo "note: graphviz (dot) is absent; --visualize tests will be skipped"; fi; }

demo: $(STAMP)
	@test -e $(STORE) || $(BIN)/zarrgeno simulate $(STORE)
	$(BIN)/zarrgeno info $(STORE) --summary
	$(BIN)/zarrgeno stats $(STORE)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The figures of docs/reliability.md: hostile-input and fault-injection cases and outcomes.
reliability: $(STAMP) system-deps
	CI=true $(BIN)/python -m pytest -m "hostile or fault" --reliability-report $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_stats.py
	$(BIN)/python benchmarks/bench_rechunk.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check zarrgeno tests benchmarks conftest.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
