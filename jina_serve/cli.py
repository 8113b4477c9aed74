"""Console scripts: ``jina-serve`` starts the service (``python -m jina_serve`` too)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

from jina_serve.config import app_args, default_config, derive_config, load_config

SERVE_EPILOG = """\
environment:
  EMBEDDINGS_CONFIG   the config, if --config is not given
  EMBEDDINGS_MODEL    the model, if --model is not given
  EMBEDDINGS_API_KEY  turns on bearer-token checks (every route but /health)
  RAY_ADDRESS         join this running Ray cluster instead of starting a local one
  RAY_SERVE_*         Ray Serve's own switches; the launcher turns on HAProxy and Ray's
                      throughput preset unless these say otherwise

SIGTERM or Ctrl-C drains: requests in flight finish before Serve stops.
"""


def serve_parser() -> argparse.ArgumentParser:
    """``jina-serve``'s options (also what ``--help`` prints)."""
    parser = argparse.ArgumentParser(
        prog="jina-serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve jina-embeddings-v3 (or any BERT-style ONNX encoder) as an "
                    "OpenAI-compatible POST /v1/embeddings on Ray Serve.",
        epilog=SERVE_EPILOG)
    parser.add_argument("--config", type=Path,
                        help="Serve config (default: ./serve_config.yaml, else the one "
                             "installed with the package)")
    parser.add_argument("--model", help="a local model folder or a Hugging Face repo id; "
                        "replaces the config's args.model")
    parser.add_argument("--host", help="address to listen on (config: http_options.host, "
                        "0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (config: http_options.port, 10002)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start Ray's dashboard too (port 8265); off, its ~10 processes "
                             "take no CPU from the model")
    return parser


def serve_main(argv: list[str] | None = None) -> None:
    """``jina-serve``: check the model, write the effective config, run the launcher."""
    from jina_serve.launcher import launch

    options = serve_parser().parse_args(argv)
    source = options.config or Path(os.environ.get("EMBEDDINGS_CONFIG") or default_config())
    if not source.is_file():
        sys.exit(f"jina-serve: no config at {source}; pass --config")
    model = options.model or os.environ.get("EMBEDDINGS_MODEL") or None
    config = derive_config(load_config(source), model=model, host=options.host,
                           port=options.port)
    _check_model(app_args(config))
    effective = Path(tempfile.mkdtemp(prefix="jina-serve-")) / "serve_config.yaml"
    effective.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    sys.exit(launch(effective, dashboard=options.dashboard))


def _check_model(args: dict) -> None:
    """Fail in a second, with one line, when the model cannot be found (before Ray starts)."""
    from pydantic import ValidationError

    from encoder.model_files import resolve_model
    from encoder.settings import ServiceSettings

    try:
        settings = ServiceSettings(**args)
        resolve_model(settings.model, settings.onnx_file, settings.revision, with_onnx=False)
    except (FileNotFoundError, ValidationError) as exc:
        sys.exit(f"jina-serve: {exc}")
