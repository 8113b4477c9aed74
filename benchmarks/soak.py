"""A bounded soak: mixed good and bad traffic for N minutes, memory sampled throughout.

Starts the real application (serve_config.yaml, the given model), runs CLIENTS loops that
send a mix of requests (1-64 texts, every task, dimensions, base64, token ids, bad inputs)
for --minutes, samples the RSS of the Serve processes (proxy, ingress, encoder) every
--every seconds from /proc, and reports each process's RSS at start and end. Loopback only;
it stops by itself. Not part of `make test`.

Usage: python -m benchmarks.soak [--model models/jina-tiny] [--minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.plots import RESULTS
from jina_serve.processes import processes
from tests.models import TASKS, build_jina_tiny
from tests.serve_process import serve_run

_ROLES = {"Encoder": "ServeReplica:embeddings:Encoder",
          "Ingress": "ServeReplica:embeddings:Ingress", "Proxy": "ProxyActor"}


def serve_rss_mb(each: bool = False) -> dict:
    """RSS in MB of the Serve processes on the host, by role: summed, or listed."""
    found: dict[str, list[float]] = {}
    for process in processes():
        for role, marker in _ROLES.items():
            if marker in process.command:
                found.setdefault(role, []).append(process.rss / 1e6)
    return found if each else {role: sum(values) for role, values in found.items()}


def random_body(rng: random.Random) -> dict | bytes:
    kind = rng.random()
    if kind < 0.08:
        return rng.choice([b"{", b'{"input": []}', b'{"input": "x", "dimensions": 0}',
                           b'{"input": "x", "task": "nope"}', b'{"input": [1.5]}'])
    words = ["alpha", "数据", "recherche", "🙂", "模型", "search", "vector", "the"]
    texts = [" ".join(rng.choices(words, k=rng.randint(2, 120)))
             for _ in range(rng.choice([1, 1, 4, 16, 64]))]
    body: dict = {"input": texts, "task": rng.choice(TASKS)}
    if rng.random() < 0.3:
        body["dimensions"] = rng.choice([8, 16, 32])
    if rng.random() < 0.3:
        body["encoding_format"] = "base64"
    if rng.random() < 0.05:
        body["input"] = [[0, rng.randint(3, 250000), 2]] * 8
    return body


async def traffic(base: str, clients: int, seconds: float) -> dict[int, int]:
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=60) as http:
            while time.monotonic() < deadline:
                body = random_body(rng)
                if isinstance(body, bytes):
                    response = await http.post(f"{base}/v1/embeddings", content=body)
                else:
                    response = await http.post(f"{base}/v1/embeddings", json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=float, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    folder = args.model or build_jina_tiny(workdir / "jina-tiny")
    samples: list[dict] = []
    totals: dict[int, int] = {}
    with serve_run(folder, workdir, cpus=None) as service:
        asyncio.run(traffic(service.url, args.clients, 20))  # warm-up: allocators settle
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.minutes * 60:
            samples.append({"t_s": round(elapsed), **serve_rss_mb()})
            print(samples[-1], flush=True)
            window = min(args.every, args.minutes * 60 - elapsed)
            for status, count in asyncio.run(traffic(service.url, args.clients, window)).items():
                totals[status] = totals.get(status, 0) + count
        samples.append({"t_s": round(time.monotonic() - start), **serve_rss_mb()})
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "soak.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t_s", *_ROLES])
        writer.writeheader()
        writer.writerows(samples)
    print(f"requests by status: {totals}")
    for role in _ROLES:
        first, last = samples[0].get(role, 0), samples[-1].get(role, 0)
        print(f"{role:>8}: RSS {first:7.1f} MB -> {last:7.1f} MB ({last - first:+.1f} MB)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
