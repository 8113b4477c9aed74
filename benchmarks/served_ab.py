"""Served texts/s at several values of one setting, one fresh service per value, alternated.

Each round starts the application once per value of one ``args`` key of ``serve_config.yaml``
(``encoder/settings.py``; the file otherwise as shipped) and drives the same loads, so host
drift lands on every value alike: on a shared 2-core VM it is larger than most effects.

    python -m benchmarks.served_ab --setting sort_window_tokens --values 512 4096
    python -m benchmarks.served_ab --setting parallel_runs --values 1 2 \\
        --load short:8x16 long:4x16 short:1x1
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.throughput import model_folder
from benchmarks.workloads import benchmark_texts, served
from tests.serve_process import serve_run


def parse_value(text: str) -> int | float | str:
    """A YAML-like scalar from the command line: int, then float, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-sized")
    parser.add_argument("--setting", default="sort_window_tokens", help="an args key")
    parser.add_argument("--values", type=parse_value, nargs="+", default=[512, 4096])
    parser.add_argument("--load", nargs="+", default=["short:8x16"],
                        help="workload:CLIENTSxTEXTS, workload short or long")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    folder = model_folder(args.model)
    texts = benchmark_texts()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    for round_ in range(args.rounds):
        for value in args.values:
            with serve_run(folder, workdir, args={args.setting: value}, cpus=None,
                           timeout_s=900) as service:
                for load in args.load:
                    workload, shape = load.split(":")
                    clients, per_request = (int(x) for x in shape.split("x"))
                    result = asyncio.run(served(service.url, texts[workload], clients,
                                                per_request, args.seconds))
                    print(f"round {round_} {args.setting}={value} {workload} {shape}: "
                          f"{result.texts_per_s:7.2f} texts/s  p50 {result.p50_ms:8.1f} ms  "
                          f"p99 {result.p99_ms:8.1f} ms {result.detail}", flush=True)


if __name__ == "__main__":
    main()
