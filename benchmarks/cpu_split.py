"""Where the host's CPU goes while the service is under load: per process group, served.

The application is started as shipped (``serve_config.yaml``, ``args.model`` replaced, plain
``jina-serve``); for each load the CPU time (user + system, from ``/proc/<pid>/stat``) of
every process on the host is read before and after, and grouped: the Encoder replica, the
Ingress, HAProxy, Ray's proxy, Ray's daemons, the benchmark's own aiohttp clients, the rest.
Shares are of all cores' time over the load's wall time: what the served figures of
``compare.py`` are short of the raw ceiling, which gives ONNX every core.

Usage: python -m benchmarks.cpu_split [--model jina-v3] [--load short:32x1 short:8x16]
       [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.plots import write_csv
from benchmarks.throughput import RESULTS, model_folder
from benchmarks.workloads import benchmark_texts, parse_load, served
from jina_serve.processes import processes
from tests.serve_process import serve_run

# First match wins: a process's group by a fragment of its command line.
GROUPS = [("Encoder replica", "ServeReplica:embeddings:Encoder"),
          ("Ingress replica", "ServeReplica:embeddings:Ingress"),
          ("HAProxy", "haproxy"), ("Ray's proxy", "ProxyActor"),
          ("Serve controller", "ServeController"), ("raylet", "raylet"),
          ("GCS", "gcs_server"), ("other Ray processes", "ray")]


def cpu_seconds() -> Counter:
    """CPU seconds so far per group, over every process now alive on the host."""
    own = os.getpid()
    totals: Counter = Counter()
    for process in processes():
        if process.pid == own:
            group = "benchmark clients (aiohttp)"
        else:
            group = next((name for name, key in GROUPS if key in process.command),
                         "everything else")
        totals[group] += process.cpu_s
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-v3")
    parser.add_argument("--load", nargs="+", default=["short:32x1", "short:8x16"])
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    folder = model_folder(args.model).resolve()
    texts = benchmark_texts()
    cores = os.cpu_count() or 1
    rows = []
    with serve_run(folder, Path(tempfile.mkdtemp(prefix="cpu-")), cpus=None,
                   timeout_s=600) as service:
        for load in args.load:
            workload, clients, per_request = parse_load(load)
            asyncio.run(served(service.url, texts[workload], clients, per_request, 5))  # warm
            before, start = cpu_seconds(), time.monotonic()
            measured = asyncio.run(served(service.url, texts[workload], clients, per_request,
                                          args.seconds))
            used, wall = cpu_seconds() - before, time.monotonic() - start
            print(f"{load}: {measured.texts_per_s:.1f} texts/s over {wall:.1f} s, {cores} cores")
            for group, seconds in used.most_common():
                share = seconds / (wall * cores)
                print(f"  {group:30s} {seconds:7.1f} CPU s  {share:6.1%} of the host")
                rows.append({"load": load, "group": group, "cpu_s": round(seconds, 1),
                             "share": round(share, 4), "texts_per_s": measured.texts_per_s})
    RESULTS.mkdir(exist_ok=True)
    print(write_csv(rows, RESULTS / f"cpu_split-{folder.name}.csv"))


if __name__ == "__main__":
    main()
