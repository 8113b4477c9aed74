"""Served texts/s at several ``sort_window_tokens``, one fresh service per value, alternated.

The sort window decides how much queued work an encoder sorts by length before packing
runs (``encoder/settings.py``). Each round starts the application once per window value
(``serve_config.yaml`` otherwise as shipped) and drives the same load, so host drift lands
on every value alike. 512 is the old behaviour: one run's worth of work in arrival order.

    python -m benchmarks.sort_window --model jina-sized --windows 512 4096 --load short:8x16
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.throughput import model_folder
from benchmarks.workloads import benchmark_texts, served
from tools.serve_process import serve_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-sized")
    parser.add_argument("--windows", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--load", nargs="+", default=["short:8x16"],
                        help="workload:CLIENTSxTEXTS, workload short or long")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    folder = model_folder(args.model)
    texts = benchmark_texts()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    for round_ in range(args.rounds):
        for window in args.windows:
            with serve_run(folder, workdir, args={"sort_window_tokens": window}, cpus=None,
                           timeout_s=900) as service:
                for load in args.load:
                    workload, shape = load.split(":")
                    clients, per_request = (int(x) for x in shape.split("x"))
                    result = asyncio.run(served(service.url, texts[workload], clients,
                                                per_request, args.seconds))
                    print(f"round {round_} window {window:>5} {workload} {shape}: "
                          f"{result.texts_per_s:7.2f} texts/s  p50 {result.p50_ms:8.1f} ms  "
                          f"p99 {result.p99_ms:8.1f} ms {result.detail}", flush=True)


if __name__ == "__main__":
    main()
