"""Served throughput and latency against the raw in-process ONNX ceiling, fp32 and int8.

One run, one model, the same texts for every mode:
  raw single     one ONNX run per text in this process (the old server's way), with latency
  raw batched    best fixed batch size over length-sorted texts: the in-process ceiling
  raw fixed batch  (long only) best fixed batch size in arrival order, as a script batches:
                 the issue's "best fixed-batch raw" reference for passages
  raw 2 parallel    raw batched's best size, sorted, two 1-thread runs at once on one session:
                 the in-process form of the encoder's ``parallel_runs: 2``
  served NxK     the real application (serve_config.yaml and its CPU shares) with N HTTP
                 clients each sending K texts per request; clients share the machine's cores
for short queries (~20 tokens) and long passages (~100-500 tokens), for fp32 and the
`quantize: int8` copy. Writes benchmarks/results/throughput-<model>.csv and .png, prints the
performance targets' ratios, the int8-vs-fp32 cosine and the encoder's RSS / weights size.

Models: jina-sized (default: the real model's compute, built on first use, 2.3 GB), minilm,
jina-tiny, or a model folder.
Usage: python -m benchmarks.throughput [--model jina-sized] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tqdm import tqdm

from benchmarks.jina_sized_model import build_jina_sized
from benchmarks.plots import RESULTS, plot_throughput, write_csv
from benchmarks.soak import serve_rss_mb
from benchmarks.workloads import Measured, benchmark_texts, raw_best_batch, raw_single, served
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.parcels import Parcel
from encoder.pooling import l2_normalize
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings
from tests.models import build_jina_tiny, build_jina_v3_graph, build_minilm
from tests.serve_process import serve_run

MODELS = {"jina-v3": build_jina_v3_graph, "jina-sized": build_jina_sized,
          "minilm-sized": lambda out: build_jina_sized(out, size="minilm"),
          "minilm": build_minilm, "jina-tiny": build_jina_tiny}
LOADS = {"short": ["1x1", "8x1", "32x1", "8x16"], "long": ["1x1", "8x1", "4x16"]}
# Encoder replicas x ORT threads on the 2 cores; serve_config.yaml ships "1x2".
# Texts each batch size of the raw ceiling runs (all of them: no time limit).
CEILING_TEXTS = {"short": 512, "long": 64}
# The raw batched references, (workload, mode) -> (length-sorted?, batch sizes or None for
# raw_best_batch's). Arrival order for long passages: 1 is often best unsorted (no padding).
BATCHED = {("short", "raw batched"): (True, None), ("long", "raw batched"): (True, None),
           ("long", "raw fixed batch"): (False, (1, 4, 16))}
PARALLEL = "raw 2 parallel"
LAYOUTS = {
    "1x2": None,
    "1x1": {"Encoder": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
                        "ray_actor_options": {"num_cpus": 1.0}}},
    "2x1": {"Encoder": {"autoscaling_config": {"min_replicas": 2, "max_replicas": 2},
                        "ray_actor_options": {"num_cpus": 0.9}}},
}


def model_folder(name: str) -> Path:
    if name in MODELS:
        folder = Path("models") / name
        if not (folder / "onnx/model.onnx").is_file():
            print(f"building {folder} ...", flush=True)
            MODELS[name](folder)
        return folder
    return Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-sized")
    parser.add_argument("--seconds", type=float, default=20, help="per measurement")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="1x2",
                        help="encoder replicas x ORT threads")
    args = parser.parse_args()

    folder = model_folder(args.model)
    card = ModelCard.from_folder(folder)
    task = card.task_id("text-matching") if card.tasks else None
    tokenizer = TextTokenizer(folder)
    texts = benchmark_texts()
    ids = {k: tokenizer.encode(v, card.max_tokens, truncate=True) for k, v in texts.items()}
    parallel_rows = sum(mode == "raw batched" for _, mode in BATCHED)
    cells = len(args.precisions) * (1 + len(BATCHED) + parallel_rows
                                    + sum(len(v) for v in LOADS.values()))
    progress = tqdm(total=cells, desc="benchmark", unit="cell")
    rows: list[dict] = []
    vectors: dict[str, object] = {}
    notes: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))

    def record(precision: str, workload: str, mode: str, result: Measured) -> None:
        rows.append({"precision": precision, "workload": workload, "mode": mode,
                     "texts_per_s": round(result.texts_per_s, 2),
                     "p50_ms": round(result.p50_ms, 2), "p99_ms": round(result.p99_ms, 2),
                     "detail": result.detail})
        progress.set_postfix_str(f"{precision} {workload} {mode}: "
                                 f"{result.texts_per_s:.1f} texts/s")
        progress.update()

    def measure_raw(model: OnnxModel, parallel: OnnxModel,
                    sizes: dict[tuple[str, str], tuple[int, ...]] | None = None,
                    ) -> dict[tuple[str, str], Measured]:
        raw_best_batch(model, card, ids["short"][:64], task, sizes=(8,))  # warm-up
        found = {("short", "raw single"): raw_single(model, card, ids["short"], task,
                                                     args.seconds)}
        for (workload, mode), (sort, default_sizes) in BATCHED.items():
            # The first texts: the served runs below cycle through the same texts from the
            # start, so both see the same length distribution.
            sample = ids[workload][: CEILING_TEXTS[workload]]
            chosen = sizes[workload, mode] if sizes else default_sizes
            found[workload, mode] = raw_best_batch(model, card, sample, task, sort=sort,
                                                   **({"sizes": chosen} if chosen else {}))
            if mode == "raw batched":
                size = found[workload, mode].batch_size
                found[workload, PARALLEL] = raw_best_batch(parallel, card, sample, task,
                                                        sizes=(size,), callers=2)
        return found

    for precision in args.precisions:
        onnx = served_onnx(folder / "onnx/model.onnx", card, int8=precision == "int8")
        model = OnnxModel(onnx, threads=2)
        parallel = OnnxModel(onnx, threads=1)
        raw_before = measure_raw(model, parallel)
        scheduler = Scheduler(model, card, SchedulerSettings(max_run_tokens=16_384,
                                                            sort_window_tokens=16_384))
        sample = ids["short"][:32] + ids["long"][:32]
        vectors[precision] = l2_normalize(
            scheduler.run_window([Parcel.from_lists(task, sample)])[0])
        del model, parallel, scheduler
        serve_args = {"quantize": "int8"} if precision == "int8" else {}
        with serve_run(folder, workdir, args=serve_args, cpus=None, timeout_s=900,
                       deployments=LAYOUTS[args.layout]) as service:
            for workload, loads in LOADS.items():
                for load in loads:
                    clients, per_request = (int(x) for x in load.split("x"))
                    result = asyncio.run(served(service.url, texts[workload], clients,
                                                per_request, args.seconds))
                    record(precision, workload, f"served {load}", result)
            # After traffic: the largest encoder replica (each holds the whole model).
            notes[f"{precision} encoder RSS MB"] = max(serve_rss_mb(each=True)["Encoder"])
        # The raw figures again, at the best batch sizes found: a shared host drifts by
        # more than the targets' margins, so ratios use the mean of before and after.
        best = {key: (raw_before[key].batch_size,) for key in BATCHED}
        raw_after = measure_raw(OnnxModel(onnx, threads=2), OnnxModel(onnx, threads=1), best)
        for (workload, mode), before in raw_before.items():
            record(precision, workload, mode, bracketed(before, raw_after[workload, mode]))
    progress.close()
    # Raw rows first within each precision and workload, as they were measured.
    rows.sort(key=lambda r: (args.precisions.index(r["precision"]), r["workload"] == "long",
                             not r["mode"].startswith("raw")))

    name = folder.name if args.layout == "1x2" else f"{folder.name}-{args.layout}"
    RESULTS.mkdir(exist_ok=True)
    csv_path = write_csv(rows, RESULTS / f"throughput-{name}.csv")
    png = plot_throughput(rows, name, RESULTS / f"throughput-{name}.png")
    for row in rows:
        print(f"{row['precision']:>5} {row['workload']:>5} {row['mode']:>14}: "
              f"{row['texts_per_s']:9.1f} texts/s  p50 {row['p50_ms']:8.1f} ms  "
              f"p99 {row['p99_ms']:8.1f} ms  {row['detail']}")
    weights_mb = sum(p.stat().st_size for p in (folder / "onnx").glob("model.onnx*")) / 1e6
    print_targets(rows, vectors, notes, weights_mb)
    print(f"wrote {csv_path} and {png}")


def bracketed(before: Measured, after: Measured) -> Measured:
    """The mean of a raw figure measured before and after the served runs, both shown."""
    return Measured((before.texts_per_s + after.texts_per_s) / 2,
                    (before.p50_ms + after.p50_ms) / 2, (before.p99_ms + after.p99_ms) / 2,
                    f"{before.detail + '; ' if before.detail else ''}before "
                    f"{before.texts_per_s:.2f} after {after.texts_per_s:.2f} texts/s")


def print_targets(rows: list[dict], vectors: dict, notes: dict, weights_mb: float) -> None:
    def get(precision, workload, mode, key="texts_per_s"):
        return next((r[key] for r in rows if r["precision"] == precision
                     and r["workload"] == workload and r["mode"] == mode), float("nan"))

    ceiling_short, ceiling_long = get("fp32", "short", "raw batched"), get("fp32", "long",
                                                                           "raw batched")
    fixed_long = get("fp32", "long", "raw fixed batch")
    print("targets (fp32):")
    for workload, load, ceiling, goal, name in (
            ("short", "32x1", ceiling_short, 0.6, "raw ceiling"),
            ("short", "8x16", ceiling_short, 0.95, "raw ceiling"),
            ("long", "4x16", fixed_long, 1.0, "best fixed-batch raw")):
        ratio = get("fp32", workload, f"served {load}") / ceiling
        print(f"  served {load} / {name}, {workload}: {ratio:.2f}  (>= {goal})")
    print(f"  (served 4x16 / sorted raw ceiling, long: "
          f"{get('fp32', 'long', 'served 4x16') / ceiling_long:.2f})")
    for workload, load in (("short", "32x1"), ("short", "8x16"), ("long", "4x16")):
        best = max(get("fp32", workload, "raw batched"), get("fp32", workload, PARALLEL))
        print(f"  (served {load} / best in-process layout incl. 2 parallel, {workload}: "
              f"{get('fp32', workload, f'served {load}') / best:.2f})")
    gap = get("fp32", "short", "served 1x1", "p50_ms") - get("fp32", "short", "raw single",
                                                              "p50_ms")
    print(f"  single short request p50, served - raw: {gap:.1f} ms  (<= 5)")
    if "int8" in vectors:
        speedup = get("int8", "long", "raw batched") / ceiling_long
        cosines = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
        print(f"  int8 / fp32 raw batched, long: {speedup:.2f}x, short: "
              f"{get('int8', 'short', 'raw batched') / ceiling_short:.2f}x  (>= 2.5); cosine to "
              f"fp32 min {cosines.min():.4f} mean {cosines.mean():.4f}  (>= 0.99)")
    rss = notes.get("fp32 encoder RSS MB", float("nan"))
    print(f"  encoder RSS / weights: {rss:.0f} / {weights_mb:.0f} MB = {rss / weights_mb:.2f}"
          "  (<= 1.3)")


if __name__ == "__main__":
    main()
