"""Per-request serving overhead under Ray Serve options, on a model whose compute is ~0.

Starts the application on jina-tiny once per option set (the ``controller_options``
environment of serve_config.yaml, which Ray reads at start) and measures: GET / (proxy +
ingress), GET /health (+ one handle call to the encoder), one-text POST latency, and
one-text requests/s from 32 clients.

Usage: python -m benchmarks.overhead [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.workloads import served, short_queries
from tests.models import build_jina_tiny
from tests.serve_process import serve_run

OPTIONS = {
    "ray-default": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "throughput-optimized": {"RAY_SERVE_ENABLE_HA_PROXY": "0",
                             "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "haproxy+throughput-optimized (shipped)": {"RAY_SERVE_ENABLE_HA_PROXY": "1",
                                               "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


def latency_ms(call, n: int = 200) -> float:
    for _ in range(20):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.percentile(np.array(samples) * 1000, 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="overhead-"))
    folder = build_jina_tiny(workdir / "jina-tiny")
    texts = short_queries(500)
    for name in args.options:
        with serve_run(folder, workdir, cpus=None, controller_env=OPTIONS[name]) as service:
            with httpx.Client() as client:
                index = latency_ms(lambda: client.get(f"{service.url}/"))
                health = latency_ms(lambda: client.get(f"{service.url}/health"))
                post = latency_ms(lambda: client.post(f"{service.url}/v1/embeddings",
                                                      json={"input": "how fast is it?"}))
            busy = asyncio.run(served(service.url, texts, 32, 1, args.seconds))
        print(f"{name:>30}: GET / {index:5.1f} ms, /health {health:5.1f} ms, POST p50 "
              f"{post:5.1f} ms, 32 clients {busy.texts_per_s:6.1f} req/s "
              f"(p50 {busy.p50_ms:.0f} ms, p99 {busy.p99_ms:.0f} ms) {busy.detail}", flush=True)


if __name__ == "__main__":
    main()
