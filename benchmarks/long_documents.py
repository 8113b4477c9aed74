"""Long documents served as shipped: their time and memory, queries meanwhile, two at once,
and a client that gives up.

Starts the application as shipped (``serve_config.yaml``, ``args.model`` replaced, by plain
``serve run``, or ``jina-serve`` with ``--launcher jina-serve``) and measures, one after another:
1. a lone query's latency, idle (``--queries`` sequential requests);
2. one document of ``--tokens`` token ids: its time, and the Encoder replica's peak RSS
   (VmHWM, reset first) against the model's fp32 weights, while one client sends lone
   queries one after another: their latency;
3. two such documents sent at once: both answered, the replica the same process;
4. a client that sends a document and closes its connection after ``--give-up`` seconds:
   how long until the Encoder's CPU use falls idle, and the next query's status.

Usage: python -m benchmarks.long_documents [--model jina-v3] [--tokens 8190]
       [--launcher serve-run|jina-serve]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.plots import write_csv
from benchmarks.replica_memory import weights_mb
from benchmarks.throughput import RESULTS, model_folder
from tests.marked_processes import idle_after, memory_mb, replica_pid, reset_peak
from tests.serve_process import abandon, serve_run

FIELDS = ("case", "status", "seconds", "p50_ms", "n", "ratio", "peak_rss_mb", "same_replica")
COMMANDS = {"serve-run": ["serve", "run"], "jina-serve": None}
QUERY = {"input": "What is the capital of Germany?", "task": "retrieval.query"}


def document(tokens: int, salt: int = 0) -> dict:
    """A request of one document given as ``tokens`` token ids (XLM-R: <s> ... </s>)."""
    return {"input": [[0, *((5 + salt + i) % 200_000 + 5 for i in range(tokens - 2)), 2]],
            "task": "retrieval.passage"}


async def _query_latencies(client: httpx.AsyncClient, url: str, until: asyncio.Task | None,
                           count: int) -> list[float]:
    """Lone queries one after another: ``count`` of them, or as many as fit before
    ``until`` is done."""
    latencies = []
    while (len(latencies) < count) if until is None else not until.done():
        started = time.perf_counter()
        response = await client.post(f"{url}/v1/embeddings", json=QUERY)
        assert response.status_code == 200, response.text
        latencies.append(time.perf_counter() - started)
    return latencies


async def _timed(client: httpx.AsyncClient, url: str, body: dict) -> tuple[int, float]:
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/embeddings", json=body)
    return response.status_code, time.perf_counter() - started


async def scenario(url: str, pid: int, tokens: int, queries: int, give_up_s: float,
                   weights: float) -> list[dict]:
    rows = []
    async with httpx.AsyncClient(timeout=900) as client:
        await _query_latencies(client, url, None, 5)  # warm
        idle = await _query_latencies(client, url, None, queries)
        rows.append({"case": "lone query, idle", "p50_ms": statistics.median(idle) * 1e3,
                     "n": len(idle)})
        reset_peak(pid)
        doc = asyncio.create_task(_timed(client, url, document(tokens)))
        await asyncio.sleep(1)  # the document is running
        during = await _query_latencies(client, url, doc, 0)
        status, seconds = await doc
        peak = memory_mb(pid)["peak_rss"]
        rows.append({"case": f"lone query during a {tokens}-token document",
                     "p50_ms": statistics.median(during) * 1e3, "n": len(during),
                     "ratio": statistics.median(during) / statistics.median(idle)})
        rows.append({"case": f"one {tokens}-token document", "status": status,
                     "seconds": seconds, "peak_rss_mb": peak, "ratio": peak / weights})
        reset_peak(pid)
        both = await asyncio.gather(*(_timed(client, url, document(tokens, salt))
                                      for salt in (1, 2)))
        rows.append({"case": f"two {tokens}-token documents at once",
                     "status": "/".join(str(s) for s, _ in both),
                     "seconds": max(s for _, s in both),
                     "peak_rss_mb": memory_mb(pid)["peak_rss"],
                     "ratio": memory_mb(pid)["peak_rss"] / weights,
                     "same_replica": replica_pid() == pid})
    body = json.dumps(document(tokens, 3)).encode()
    start = time.monotonic()
    outcome = await abandon(url, body, give_up_s)
    idle_s = await asyncio.to_thread(idle_after, pid, start, 60)
    async with httpx.AsyncClient(timeout=60) as client:
        status, seconds = await _timed(client, url, QUERY)
    rows.append({"case": f"client gone after {give_up_s:g} s ({outcome})",
                 "seconds": idle_s - give_up_s, "status": status,
                 "p50_ms": seconds * 1e3})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-v3")
    parser.add_argument("--tokens", type=int, default=8190)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--give-up", type=float, default=2.0)
    parser.add_argument("--launcher", choices=tuple(COMMANDS), default="serve-run")
    args = parser.parse_args()
    folder = model_folder(args.model).resolve()
    weights = weights_mb(folder)
    with serve_run(folder, Path(tempfile.mkdtemp(prefix="long-")), cpus=None,
                   timeout_s=900, command=COMMANDS[args.launcher]) as service:
        pid = replica_pid()
        rows = asyncio.run(scenario(service.url, pid, args.tokens, args.queries,
                                    args.give_up, weights))
    print(f"\n{folder.name}: fp32 weights {weights:.0f} MB\n")
    for row in rows:
        print(" | ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in row.items()))
    RESULTS.mkdir(exist_ok=True)
    table = [{k: round(r[k], 3) if isinstance(r.get(k), float) else r.get(k, "")
              for k in FIELDS} for r in rows]
    print(write_csv(table, RESULTS / f"long_documents-{folder.name}.csv"))


if __name__ == "__main__":
    main()
