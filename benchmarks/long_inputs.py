"""One long input on jina-v3's prepared graph: time and peak RSS per length, flash against
masked and unfused attention.

An unpadded run takes the prepared graph's flash branch (``encoder/model/attention.py``);
the comparisons are the same graph with both branches masked, which is what the prepared
copy ran before (``MultiHeadAttention`` with a ``key_padding_mask``, the ``[heads, n, n]``
scores held per layer), and "unfused": the prepared copy's other passes (LoRA on
activations, fused rotary) with the export's attention as it is (``Einsum`` + mask +
``Softmax``). Each (graph, length) runs once, batch 1, in a fresh process with 2 ORT
threads, after a 16-token run that pages the weights in: the time of that run and the
process's peak RSS (``VmHWM``).

Usage: python -m benchmarks.long_inputs [--lengths 512 2048 4096 8192]
       [--graphs flash masked unfused]
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
from encoder.model.graph import keep_outputs
from encoder.model.lora import lora_to_activations
from encoder.model.prepare import served_output
from encoder.model.rotary import fuse_rotary
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.model.tensors import Tensors
from tests.marked_processes import memory_mb


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


def unfused_variant(source: Path) -> Path:
    """The export with every prepare pass but the attention's (``bypass_concat_split``,
    ``fuse_attention``), beside it (with a data file of its own, 2.3 GB, built once)."""
    target = source.with_name(source.stem + ".unfused-bench.onnx")
    if not target.exists():
        tensors = Tensors.load(source)
        outputs = [(o.name, len(o.type.tensor_type.shape.dim))
                   for o in tensors.model.graph.output]
        keep_outputs(tensors, [served_output(outputs) or ""])
        lora_to_activations(tensors)
        fuse_rotary(tensors, ModelCard.from_folder(source.parents[1]).attention_heads)
        tensors.save(target)
    return target


def _one_run(path: Path, length: int) -> tuple[float, float]:
    model = OnnxModel(path, threads=2)
    ids = np.random.default_rng(0).integers(5, 250000, (1, length))
    # A short run first: the timed one must not pay for paging in the mapped weights.
    model.token_states(ids[:, :16], np.ones_like(ids[:, :16]), 1)
    start = time.perf_counter()
    model.token_states(ids, np.ones_like(ids), 1)
    return time.perf_counter() - start, memory_mb(os.getpid())["peak_rss"]


def measure(path: Path, length: int, max_rss_mb: float) -> tuple[float | str, float]:
    """Seconds of one run and peak RSS in MB, in a fresh process; a run that grows past
    ``max_rss_mb`` is killed: "killed after N s" and that size."""
    started = time.perf_counter()
    result = in_fresh_process(_one_run, path, length, max_rss_mb=max_rss_mb)
    if result is None:
        return f"killed after {time.perf_counter() - started:.0f} s", max_rss_mb
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 4096, 8192])
    parser.add_argument("--graphs", nargs="+", default=["flash", "masked", "unfused"])
    parser.add_argument("--max-rss-gb", type=float, default=20.0,
                        help="kill a run past this RSS (the unfused graph at 8192 tokens "
                        "outgrows a 24 GB host)")
    args = parser.parse_args()
    folder = model_folder("jina-v3").resolve()
    source = folder / "onnx/model.onnx"
    prepared = served_onnx(source, ModelCard.from_folder(folder))
    variants = {"flash": lambda: prepared, "masked": lambda: masked_variant(prepared),
                "unfused": lambda: unfused_variant(source)}
    graphs = {name: variants[name]() for name in args.graphs}
    rows = []
    for length in args.lengths:
        row: dict = {"tokens": length}
        for name, path in graphs.items():
            seconds, peak = measure(path, length, args.max_rss_gb * 1024)
            row |= {f"{name}_s": seconds if isinstance(seconds, str) else round(seconds, 1),
                    f"{name}_peak_mb": round(peak)}
        for name in graphs:
            if name != "flash" and "flash" in graphs and not isinstance(row[f"{name}_s"], str):
                row[f"flash_over_{name}"] = round(row["flash_s"] / row[f"{name}_s"], 2)
        rows.append(row)
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    print(write_csv(rows, RESULTS / "long_inputs-jina-v3.csv"))


if __name__ == "__main__":
    main()
