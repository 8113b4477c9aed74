"""What users compare, in one run: the raw in-process ceiling, the service as the design
starts it (plain ``serve run serve_config.yaml``) and, when installed, infinity-emb on the
same model and texts. For an export the service prepares (jina-v3's), also the export as
published run one text at a time: what the Robyn server this project replaces did.

Loads are CLIENTSxTEXTS per request over HTTP from aiohttp clients on the same cores. The raw
ceiling is the best fixed batch size over length-sorted texts in this process (2 ORT
threads), measured before and after the served runs (the mean is used). With ``--rounds``
the contenders are started and driven in turn that many times and each figure is the median
of its rounds: a shared 2-core VM drifts by more than most differences. infinity-emb needs
torch, so it lives in its own venv (requirements-infinity.txt); without one this prints the
rest. Writes benchmarks/results/compare-<model>.csv and .png.

Usage: python -m benchmarks.compare [--model minilm-sized] [--seconds 20] [--rounds 1]
       [--infinity .venv-infinity/bin/python] [--ceiling-texts 512 64]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.infinity_model import VARIANTS, bake_task, infinity_command
from benchmarks.plots import plot_throughput, write_csv
from benchmarks.throughput import CEILING_TEXTS, RESULTS, model_folder
from benchmarks.workloads import (
    Measured,
    benchmark_texts,
    raw_best_batch,
    raw_single,
    reopened,
    served,
)
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from tests.serve_process import free_port, serve_run, wait_healthy

LOADS = [("short", 32, 1), ("short", 16, 1), ("short", 8, 16), ("long", 4, 16),
         ("short", 1, 1)]
# Where `make bench-infinity` installs it; --infinity names another.
INFINITY_PYTHON = Path(".venv-infinity/bin/python")


def raw_figures(folder: Path, texts: dict[str, list[str]], seconds: float,
                ceiling_texts: dict[str, int] = CEILING_TEXTS) -> dict[str, Measured]:
    """The in-process ceiling per workload and one run per short text (latency), on what the
    service serves (the prepared copy); and, when that is not the export as published, one
    run per short text of the export."""
    card = ModelCard.from_folder(folder)
    task = card.task_id("text-matching") if card.tasks else None
    tokenizer = TextTokenizer(folder)
    source = folder / "onnx/model.onnx"
    served_path = served_onnx(source, card)
    model = OnnxModel(served_path, threads=2)
    ids = {k: tokenizer.encode(v[: ceiling_texts[k]], card.max_tokens, truncate=True)
           for k, v in texts.items()}
    raw_best_batch(model, card, ids["short"][:64], task, sizes=(8,))  # warm-up
    found = {workload: raw_best_batch(model, card, sample, task)
             for workload, sample in ids.items()}
    found["single"] = raw_single(model, card, ids["short"], task, seconds)
    defaults = reopened(served_path, 2, defaults=True)
    raw_single(defaults, card, ids["short"][:2], task, seconds)  # warm-up
    found["defaults single"] = raw_single(defaults, card, ids["short"], task, seconds)
    if served_path != source:
        export = OnnxModel(source, threads=2)
        raw_single(export, card, ids["short"][:2], task, seconds)  # warm-up
        found["export single"] = raw_single(export, card, ids["short"], task, seconds)
    return found


@contextmanager
def infinity(python: Path, folder: Path, workdir: Path,
             variant: str) -> Iterator[tuple[str, str]]:
    """infinity-emb serving ``folder`` (task baked in), started as ``variant`` says
    (``infinity_model.VARIANTS``): yields (base URL, model name)."""
    baked = bake_task(folder, workdir / f"{folder.name}-infinity")
    port = free_port()
    log_path = workdir / f"infinity-{variant}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(infinity_command(python, baked, port, variant), stdout=log,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "DO_NOT_TRACK": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path, timeout_s=300)
        yield url, baked.name
    finally:
        process.terminate()
        process.wait(timeout=60)


def drive(url: str, texts: dict[str, list[str]], seconds: float, **request) -> dict:
    """Every load against one server: (workload, load) -> Measured."""
    return {(w, f"{c}x{k}"): asyncio.run(served(url, texts[w], c, k, seconds, **request))
            for w, c, k in LOADS}


def median_of(rounds: list[dict]) -> dict:
    """Per load, the round with the median texts/s, every round's figure in its detail."""
    merged = {}
    for key in rounds[0]:
        ordered = sorted((r[key] for r in rounds), key=lambda m: m.texts_per_s)
        middle = ordered[len(ordered) // 2]
        merged[key] = Measured(middle.texts_per_s, middle.p50_ms, middle.p99_ms, "rounds " +
                               " ".join(f"{r[key].texts_per_s:.1f}" for r in rounds))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-sized")
    parser.add_argument("--seconds", type=float, default=20, help="per load")
    parser.add_argument("--rounds", type=int, default=1, help="contenders alternated")
    parser.add_argument("--infinity", type=Path, help="python of a venv with infinity-emb")
    parser.add_argument("--infinity-variants", nargs="*", choices=sorted(VARIANTS),
                        default=["defaults", "no-optimizer"],
                        help="how infinity-emb is started (benchmarks/infinity_model.py); "
                             "none: without infinity-emb")
    parser.add_argument("--ceiling-texts", type=int, nargs=2, metavar=("SHORT", "LONG"),
                        default=[CEILING_TEXTS["short"], CEILING_TEXTS["long"]],
                        help="texts each batch size of the raw ceiling runs")
    args = parser.parse_args()
    ceiling = dict(zip(("short", "long"), args.ceiling_texts, strict=True))
    folder = model_folder(args.model).resolve()
    texts = benchmark_texts()
    workdir = Path(tempfile.mkdtemp(prefix="compare-"))
    python = args.infinity or (INFINITY_PYTHON if INFINITY_PYTHON.is_file() else None)

    before = raw_figures(folder, texts, args.seconds, ceiling)
    variants = args.infinity_variants if python else []
    rounds: dict[str, list[dict]] = {"served": [],
                                     **{f"infinity-emb {v}": [] for v in variants}}
    for _ in range(args.rounds):
        with serve_run(folder, workdir, cpus=None, timeout_s=900,
                       command=["serve", "run"]) as service:
            rounds["served"].append(drive(service.url, texts, args.seconds))
        for variant in variants:
            try:
                with infinity(python, folder, workdir, variant) as (url, name):
                    rounds[f"infinity-emb {variant}"].append(
                        drive(url, texts, args.seconds, path="/embeddings", model=name))
            except RuntimeError as exc:  # it did not start: say so, go on without it
                print(f"infinity-emb {variant} did not start: {str(exc)[-400:]}")
    rounds = {contender: measured for contender, measured in rounds.items() if measured}
    results = {contender: median_of(measured) for contender, measured in rounds.items()}
    after = raw_figures(folder, texts, args.seconds, ceiling)
    raw = {k: (before[k].texts_per_s + after[k].texts_per_s) / 2 for k in before}
    report(folder.name, raw, before, after, results)


def _mean_ms(before: Measured, after: Measured) -> float | str:
    """The mean of two p50s, or "" where there is none (ceilings)."""
    mean = (before.p50_ms + after.p50_ms) / 2
    return "" if math.isnan(mean) else round(mean, 1)


def report(name: str, raw: dict[str, float], before: dict, after: dict, results: dict) -> None:
    """Print the table (markdown), write the CSV and the plot."""
    # Every figure the report prints has its row: the ceilings, one run per short text on
    # what the service serves, and (prepared models) on the export as published.
    modes = {"short": ("short", "ceiling"), "long": ("long", "ceiling"),
             "single": ("short", "raw one text per run"),
             "defaults single": ("short", "raw one text per run, ORT defaults"),
             "export single": ("short", "export as published, one text per run")}
    rows = [{"precision": "raw", "workload": modes[w][0], "mode": modes[w][1],
             "texts_per_s": round(v, 2 if v < 10 else 1),
             "p50_ms": _mean_ms(before[w], after[w]),
             "detail": f"before {before[w].texts_per_s:.2f} ({before[w].detail})"
             f" after {after[w].texts_per_s:.2f} ({after[w].detail})"}
            for w, v in raw.items()]
    for contender, measured in results.items():
        rows += [{"precision": contender, "workload": w, "mode": load,
                  "texts_per_s": round(m.texts_per_s, 1), "p50_ms": round(m.p50_ms, 1),
                  "detail": m.detail} for (w, load), m in measured.items()]
    print(f"\n{name}: raw ceiling short {raw['short']:.1f}, long {raw['long']:.1f} texts/s; "
          f"one raw run per short text {raw['single']:.1f} texts/s, p50 "
          f"{(before['single'].p50_ms + after['single'].p50_ms) / 2:.1f} ms")
    lone = results["served"][("short", "1x1")].p50_ms
    defaults = (before["defaults single"].p50_ms + after["defaults single"].p50_ms) / 2
    print(f"one raw run per short text with ORT's defaults: p50 {defaults:.1f} ms; a lone "
          f"served query's p50 ÷ it: {lone / defaults:.2f}")
    if "export single" in raw:
        print(f"the export as published, one run per short text: {raw['export single']:.2f} "
              f"texts/s; served short 32x1 ÷ it: "
              f"{results['served'][('short', '32x1')].texts_per_s / raw['export single']:.1f}")
    others = [c for c in results if c != "served"]
    print()
    print("| load | served texts/s (p50 ms) | served ÷ raw ceiling | "
          + " | ".join(f"{c} texts/s (p50 ms) | served ÷ it" for c in others) + " |")
    print("|---|---|---|" + "---|---|" * len(others))
    for (workload, load), m in results["served"].items():
        line = (f"| {workload} {load} | {m.texts_per_s:.1f} ({m.p50_ms:.1f}) | "
                f"{m.texts_per_s / raw[workload]:.2f} |")
        for contender in others:
            other = results[contender][(workload, load)]
            line += (f" {other.texts_per_s:.1f} ({other.p50_ms:.1f}) | "
                     f"{m.texts_per_s / other.texts_per_s:.2f} |")
        print(line)
    RESULTS.mkdir(exist_ok=True)
    path = write_csv(rows, RESULTS / f"compare-{name}.csv")
    try:
        png = plot_throughput(rows, f"compare {name}", RESULTS / f"compare-{name}.png")
    except ImportError:  # matplotlib: requirements-bench.txt
        png = "no plot (matplotlib missing)"
    print(f"\nwrote {path} and {png}")


if __name__ == "__main__":
    main()
