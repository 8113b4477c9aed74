"""Console scripts: ``jina-serve`` starts the service (``python -m jina_serve`` too);
``jina-embed`` runs a bulk embedding job on Ray Data."""

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
    parser.add_argument("--prepare", action="store_true",
                        help="download every model and build the copy its encoders serve "
                             "(the prepared graph, and its int8 copy with quantize: int8), "
                             "print their paths and exit: for image builds and warming a "
                             "cache")
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
    if options.prepare:
        sys.exit(_prepare(app_args(config)))
    effective = Path(tempfile.mkdtemp(prefix="jina-serve-")) / "serve_config.yaml"
    effective.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    sys.exit(launch(effective, dashboard=options.dashboard))


def _check_model(args: dict) -> None:
    """Fail in a second, with one line, when a model cannot be found (before Ray starts)."""
    from pydantic import ValidationError

    from encoder.model.card import ModelCard
    from encoder.model.files import model_root
    from encoder.settings import ServiceSettings

    try:
        for model in ServiceSettings(**args).models():
            ModelCard.from_folder(model_root(model))
    except (FileNotFoundError, ValidationError, ValueError) as exc:
        sys.exit(f"jina-serve: {exc}")


def _prepare(args: dict) -> None:
    """Resolve (download) every model and build what its replicas will serve."""
    import logging

    from encoder.model.card import ModelCard
    from encoder.model.files import resolve_model
    from encoder.model.runtime import served_onnx
    from encoder.settings import ServiceSettings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for model in ServiceSettings(**args).models():
        files = resolve_model(model.model, model.onnx_file, model.revision)
        assert files.onnx is not None
        print(served_onnx(files.onnx, ModelCard.from_folder(files.root),
                          int8=model.quantize == "int8"))


def embed_parser() -> argparse.ArgumentParser:
    """``jina-embed``'s options (also what ``--help`` prints)."""
    parser = argparse.ArgumentParser(
        prog="jina-embed", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Embed files of texts on Ray Data with the service's own model and core: "
                    "parquet, JSONL or CSV in, parquet with an 'embedding' column out; OpenAI "
                    "Batch API input files in, OpenAI's output lines out.",
        epilog="RAY_ADDRESS runs the job on that cluster (else on a local Ray). A re-run with "
               "the same --output skips inputs already written completely.")
    parser.add_argument("--input", required=True, help="a file, folder or glob; local or "
                        "any URI pyarrow reads (s3://, gs://)")
    parser.add_argument("--output", required=True, help="the output folder (or URI)")
    parser.add_argument("--config", type=Path, help="serve config whose args and Encoder "
                        "num_cpus the job uses (default: as jina-serve)")
    parser.add_argument("--model", help="replaces the config's args.model")
    parser.add_argument("--task", help="the model's task (default: args.default_task)")
    parser.add_argument("--column", default="text", help="the column of texts (default text); "
                        "every other column is kept")
    parser.add_argument("--dimensions", type=int, help="Matryoshka truncation, renormalised")
    parser.add_argument("--normalized", choices=["true", "false"], default="true")
    parser.add_argument("--embedding-type", choices=["float", "binary", "ubinary"],
                        default="float")
    parser.add_argument("--truncate", action="store_true",
                        help="cut texts over the token limit instead of failing their rows")
    parser.add_argument("--format", choices=["auto", "table", "openai-batch"], default="auto",
                        help="auto: JSONL whose lines hold custom_id and body is a batch file")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per encoder call")
    parser.add_argument("--actors", type=int, help="encoder actors (default: as many as the "
                        "cluster's CPUs hold)")
    parser.add_argument("--actor-cpus", type=float, help="CPUs per encoder actor (default: "
                        "the config's Encoder num_cpus)")
    return parser


def embed_main(argv: list[str] | None = None) -> None:
    """``jina-embed``: run the bulk job and print its summary as JSON."""
    import json

    import ray

    from encoder.settings import ServiceSettings
    from jina_serve.bulk import BulkOptions
    from jina_serve.embed_job import JobPlan, local_ray_cpus, run_job

    options = embed_parser().parse_args(argv)
    source = options.config or Path(os.environ.get("EMBEDDINGS_CONFIG") or default_config())
    config = derive_config(load_config(source), model=options.model
                           or os.environ.get("EMBEDDINGS_MODEL") or None)
    _check_model(app_args(config))
    settings = ServiceSettings(**app_args(config))
    encoder = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Encoder")
    actor_cpus = options.actor_cpus or encoder.get("ray_actor_options", {}).get("num_cpus", 1)
    address = os.environ.get("RAY_ADDRESS") or "local"
    extra = ({"include_dashboard": False, "num_cpus": local_ray_cpus()}
             if address == "local" else {})
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers' logs stay in Ray's log files: stdout is the job's summary.
    ray.init(address=address, logging_level="WARNING", log_to_driver=False, **extra)
    free = ray.available_resources().get("CPU", 1) - 1  # a CPU stays for file listing
    actors = options.actors or max(1, int(free // actor_cpus))
    plan = JobPlan(settings=settings, output=options.output, actor_cpus=actor_cpus,
                   actors=actors, batch_size=options.batch_size, mode=options.format,
                   options=BulkOptions(column=options.column, task=options.task,
                                       dimensions=options.dimensions,
                                       normalized=options.normalized == "true",
                                       embedding_type=options.embedding_type,
                                       truncate=options.truncate))
    try:
        summary = run_job(options.input, plan)
    finally:
        ray.shutdown()
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["failed_files"] else 0)
