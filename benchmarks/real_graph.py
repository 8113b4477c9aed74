"""jina-v3's real graph, raw in-process: the export as published, its prepared copy, the stand-in.

- Per batch size, for 16-token queries and 512-token passages: ms per ONNX run of the
  prepared graph (what the service serves) and of the stand-in ``jina-sized`` (the same
  FLOPs, no LoRA), alternated in one process so drift lands on both.
- The export as published, one text per run (what the Robyn server this project replaces,
  and fastembed, do): ms per 16-token query.
- ``quantize: int8`` against fp32 at batch 1 and 32 on both graphs (the int8 copy this
  CPU gets: 7-bit weights without VNNI), and how many operators it quantized.
- Peak RSS of one session of each graph, each in a fresh process.

Both models are built on first use (``models/jina-v3`` needs ``../shared``). Writes
benchmarks/results/real_graph.csv. Name the CPU with the figures: they are this host's.

Usage: python -m benchmarks.real_graph [--batches 1 8 32 64] [--reps 5] [--skip-long]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from benchmarks.plots import write_csv
from benchmarks.throughput import RESULTS, model_folder
from benchmarks.workloads import in_fresh_process
from encoder.model.card import ModelCard
from encoder.model.quantize import cpu_flags_of_host, int8_can_saturate
from encoder.model.runtime import OnnxModel, served_onnx
from tests.marked_processes import memory_mb

SHAPES = {"query": 16, "passage": 512}
# Runs of more tokens than this are timed once, without a warm-up run (minutes each).
_WARM_TOKENS = 8192


def timed_ms(models: list[OnnxModel], batch: int, length: int, reps: int,
             seed: int = 0) -> list[float]:
    """Median ms per model of ``reps`` runs of ``batch`` random sequences of ``length``
    tokens, the models taking turns run by run so drift lands on each alike."""
    ids = np.random.default_rng(seed).integers(5, 250000, (batch, length))
    mask = np.ones_like(ids)
    if batch * length <= _WARM_TOKENS:
        for model in models:
            model.token_states(ids, mask, 1)
    else:
        reps = 1
    times: list[list[float]] = [[] for _ in models]
    for _ in range(reps):
        for model, spent in zip(models, times, strict=True):
            start = time.perf_counter()
            model.token_states(ids, mask, 1)
            spent.append(time.perf_counter() - start)
    return [1000 * float(np.median(spent)) for spent in times]


def quantized_ops(path: Path) -> int:
    ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return sum(ops[op] for op in ("MatMulInteger", "DynamicQuantizeMatMul", "QGemm",
                                  "MatMulIntegerToFloat"))


def _session_peak_rss_mb(path: Path) -> float:
    model = OnnxModel(path, threads=2)
    for batch, length in ((32, 16), (1, 512)):
        timed_ms([model], batch, length, reps=1)
    return memory_mb(os.getpid())["peak_rss"]


def peak_rss_mb(path: Path) -> float:
    """Peak RSS of a fresh process holding one 2-thread session of ``path`` through a batch
    of 32 queries and one passage."""
    return in_fresh_process(_session_peak_rss_mb, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-long", action="store_true", help="queries only")
    parser.add_argument("--memory-only", action="store_true", help="peak RSS rows only")
    args = parser.parse_args()
    real, stand_in = model_folder("jina-v3").resolve(), model_folder("jina-sized").resolve()
    paths = {"export": real / "onnx/model.onnx"}
    for name, folder in (("prepared", real), ("stand-in", stand_in)):
        card = ModelCard.from_folder(folder)
        paths[name] = served_onnx(folder / "onnx/model.onnx", card)
        paths[f"{name} int8"] = served_onnx(folder / "onnx/model.onnx", card, int8=True)
    flags = sorted(cpu_flags_of_host() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni",
                                          "amx_int8", "avx512_bf16"})
    print(f"CPU flags: {' '.join(flags) or 'unknown'}; int8 weights: "
          f"{7 if int8_can_saturate() else 8}-bit")
    rows: list[dict] = []

    def row(**fields) -> None:
        rows.append({"what": "", "shape": "", "batch": "", "ms": "", "ratio": "", **fields})
        print("  ".join(f"{k} {v}" for k, v in rows[-1].items() if v != ""), flush=True)

    if not args.memory_only:
        timings(paths, args, row)
    for name in ("export", "prepared", "stand-in", "prepared int8"):
        row(what=f"peak RSS MB, one session of the {name}", ms=round(peak_rss_mb(paths[name])))
    RESULTS.mkdir(exist_ok=True)
    print(write_csv(rows, RESULTS / "real_graph.csv"))


def timings(paths: dict[str, Path], args: argparse.Namespace, row) -> None:
    """The export's one-query run, prepared ÷ stand-in per shape and batch, int8 speed-ups."""
    models = {name: OnnxModel(path, threads=2) for name, path in paths.items()}
    (single,) = timed_ms([models.pop("export")], 1, SHAPES["query"], args.reps)
    row(what="export as published, one query per run", shape="query", batch=1,
        ms=round(single, 1))
    for shape, length in SHAPES.items():
        if shape == "passage" and args.skip_long:
            continue
        for batch in args.batches:
            ms = dict(zip(("prepared", "stand-in"), timed_ms(
                [models["prepared"], models["stand-in"]], batch, length, args.reps), strict=True))
            row(what="prepared ÷ stand-in", shape=shape, batch=batch,
                ms=f"{ms['prepared']:.0f} / {ms['stand-in']:.0f}",
                ratio=round(ms["prepared"] / ms["stand-in"], 3))
    for name in ("prepared", "stand-in"):
        for batch in (1, 32):
            fp32, int8 = timed_ms([models[name], models[f"{name} int8"]], batch,
                                  SHAPES["query"], args.reps)
            row(what=f"{name}: int8 speed-up ({quantized_ops(paths[f'{name} int8'])} "
                f"quantized ops)", shape="query", batch=batch, ms=f"{int8:.0f} / {fp32:.0f}",
                ratio=round(fp32 / int8, 2))


if __name__ == "__main__":
    main()
