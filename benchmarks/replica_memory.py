"""The Encoder replica's memory, served: idle and the peak under each load, per setting value.

For each value of one ``args`` key (default ``scheduler.parallel_runs`` 1 and 2) the
application is started as shipped (``serve_config.yaml``, ``args.model`` replaced, plain
``jina-serve``), and the Encoder replica's peak RSS is read from the kernel (``VmHWM``, reset
before each load through ``/proc/<pid>/clear_refs``; needs root or the replica's owner) along
with its PSS, which counts file pages mapped twice (two ONNX sessions) once. Reported against
the size of the model's fp32 weights, the figure ``ray_actor_options.memory`` and the KubeRay
limits are set from (docs/performance.md).

Usage: python -m benchmarks.replica_memory [--model jina-v3] [--values 1 2]
       [--load short:32x1 short:8x16 long:4x16] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.plots import write_csv
from benchmarks.served_ab import parse_value, setting_args
from benchmarks.throughput import RESULTS, model_folder
from benchmarks.workloads import benchmark_texts, parse_load, served
from encoder.model.prepare import external_data
from tests.marked_processes import memory_mb, replica_pid, reset_peak
from tests.serve_process import serve_run


def weights_mb(folder: Path) -> float:
    onnx = folder / "onnx/model.onnx"
    return sum(p.stat().st_size for p in [onnx, *external_data(onnx)]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-v3")
    parser.add_argument("--setting", default="scheduler.parallel_runs")
    parser.add_argument("--values", type=parse_value, nargs="+", default=[1, 2])
    parser.add_argument("--load", nargs="+", default=["short:32x1", "short:8x16", "long:4x16"])
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    name = model_folder(args.model).name
    folder = model_folder(args.model).resolve()
    weights = weights_mb(folder)
    texts = benchmark_texts()
    workdir = Path(tempfile.mkdtemp(prefix="memory-"))
    rows = []
    for value in args.values:
        with serve_run(folder, workdir, args=setting_args(args.setting, value), cpus=None,
                       timeout_s=900) as service:
            pid = replica_pid()
            idle = memory_mb(pid)
            rows.append({"setting": f"{args.setting}={value}", "load": "idle", **idle,
                         "texts_per_s": ""})
            for load in args.load:
                workload, clients, per_request = parse_load(load)
                reset_peak(pid)
                result = asyncio.run(served(service.url, texts[workload], clients, per_request,
                                            args.seconds))
                rows.append({"setting": f"{args.setting}={value}", "load": load,
                             **memory_mb(pid), "texts_per_s": round(result.texts_per_s, 2)})
    print(f"\n{name}: fp32 weights {weights:.0f} MB\n")
    print("| setting | load | peak RSS MB (÷ weights) | RSS after | PSS after |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['load']} | {row['peak_rss']:.0f} "
              f"({row['peak_rss'] / weights:.2f}) | {row['rss']:.0f} | {row['pss']:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    print(write_csv([{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rows], RESULTS / f"replica_memory-{name}.csv"))


if __name__ == "__main__":
    main()
