# The two entry points a user needs: `make demo` and `make test`. Each builds its own
# virtual environment and installs what it needs into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Lint what exists: a folder that is not there yet (benchmarks/) would fail ruff with E902.
LINT_PATHS := $(wildcard src tests examples benchmarks docs/reference)

.PHONY: demo demo-wsgi test lint typecheck docs docs-figures bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.demo

# The peers the benchmarks compare against; the tests' smoke run measures them too.
$(VENV)/.bench: $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

## Run the seed server's Python rewrite (ASGI flavour) on 0.0.0.0:8080 (PORT overrides).
demo: $(VENV)/.demo
	$(BIN)/python -m examples.node_demo.asgi_app

## The same contract served by Werkzeug (WSGI flavour).
demo-wsgi: $(VENV)/.demo
	$(BIN)/python -m examples.node_demo.wsgi_app

## Lint, format check, mypy strict, then the whole test suite.
test: $(VENV)/.bench lint typecheck docs
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(VENV)/.dev
	$(BIN)/mypy

## Build the documentation with MkDocs in strict mode (broken links fail).
docs: $(VENV)/.dev
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

## Draw the shutdown timeline figures (docs/shutdown-timeline*.png and .json) from two
## rolling restarts of the node demo through HAProxy, with and without the delay; a minute.
docs-figures: $(VENV)/.bench
	$(BIN)/python -m benchmarks.figures

## Benchmarks against bare apps and peer packages (docs/performance.md); a few minutes.
bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
