"""One long input on jina-v3's prepared graph: time and peak RSS per length, flash against
masked attention.

An unpadded run takes the prepared graph's flash branch (``encoder/model/attention.py``);
the comparison is the same graph with both branches masked, which is what the prepared copy
ran before (``MultiHeadAttention`` with a ``key_padding_mask``, the ``[heads, n, n]`` scores
held per layer). Each (graph, length) runs once, batch 1, in a fresh process with 2 ORT
threads, after a 16-token run that pages the weights in: the time of that run and the
process's peak RSS (``VmHWM``).

Usage: python -m benchmarks.long_inputs [--lengths 512 2048 4096 8192]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import onnx

from benchmarks.plots import write_csv
from benchmarks.throughput import RESULTS, model_folder
from benchmarks.workloads import in_fresh_process
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from tests.serve_process import memory_mb


def masked_variant(prepared: Path) -> Path:
    """The prepared graph with each attention's flash branch replaced by its masked one,
    beside it (graph only; the weights stay in the prepared copy's data file)."""
    target = prepared.with_name(prepared.stem + ".masked-bench.onnx")
    if not target.exists():
        model = onnx.load(str(prepared), load_external_data=False)
        for node in model.graph.node:
            if node.op_type == "If":
                branches = {a.name: a for a in node.attribute}
                branches["then_branch"].g.CopyFrom(branches["else_branch"].g)
        onnx.save(model, str(target))
    return target


def _one_run(path: Path, length: int) -> tuple[float, float]:
    model = OnnxModel(path, threads=2)
    ids = np.random.default_rng(0).integers(5, 250000, (1, length))
    # A short run first: the timed one must not pay for paging in the mapped weights.
    model.token_states(ids[:, :16], np.ones_like(ids[:, :16]), 1)
    start = time.perf_counter()
    model.token_states(ids, np.ones_like(ids), 1)
    return time.perf_counter() - start, memory_mb(os.getpid())["peak_rss"]


def measure(path: Path, length: int) -> tuple[float, float]:
    """Seconds of one run and peak RSS in MB, in a fresh process."""
    return in_fresh_process(_one_run, path, length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 4096, 8192])
    args = parser.parse_args()
    folder = model_folder("jina-v3").resolve()
    prepared = served_onnx(folder / "onnx/model.onnx", ModelCard.from_folder(folder))
    graphs = {"flash": prepared, "masked": masked_variant(prepared)}
    rows = []
    for length in args.lengths:
        figures = {name: measure(path, length) for name, path in graphs.items()}
        (flash_s, flash_mb), (masked_s, masked_mb) = figures["flash"], figures["masked"]
        rows.append({"tokens": length, "flash_s": round(flash_s, 1),
                     "masked_s": round(masked_s, 1), "time_ratio": round(flash_s / masked_s, 2),
                     "flash_peak_mb": round(flash_mb), "masked_peak_mb": round(masked_mb)})
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    print(write_csv(rows, RESULTS / "long_inputs-jina-v3.csv"))


if __name__ == "__main__":
    main()
