#!/bin/sh
# Start the service; EMBEDDINGS_MODEL (a mounted folder or a hub id) overrides args.model.
set -eu
config=serve_config.yaml
if [ -n "${EMBEDDINGS_MODEL:-}" ]; then
  python -m tools.config_for_model serve_config.yaml "$EMBEDDINGS_MODEL" /tmp/serve_config.yaml
  config=/tmp/serve_config.yaml
fi
exec serve run "$config"
