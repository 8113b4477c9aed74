"""Served texts/s and latency against a plain in-process ONNX loop, on the same model and texts.

One run measures, on one model:
  raw-loop     the old server's way: one ONNX run per text, in this process
  raw-batched  best fixed batch size over length-sorted texts, in this process (the ceiling)
  served       `serve run serve_config.yaml` (its real CPU shares), N concurrent HTTP clients
               each sending K texts per request (--load NxK)
and writes a CSV to benchmarks/results/. Clients and server share the machine's cores, so
served figures include the clients' own CPU cost.

Usage: python -m benchmarks.throughput [--model models/minilm] [--load 1x1 32x1 8x16]
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
import numpy as np

from encoder.batching import pad
from encoder.model_card import ModelCard
from encoder.runtime import OnnxModel
from encoder.tokenize import TextTokenizer
from tools.serve_process import serve_run
from tools.test_models import build_minilm

RESULTS = Path(__file__).parent / "results"
_WORDS = ("how what why where cat dog market price river city music history science data "
          "model search engine query answer learn fast small large old new best cheap "
          "recipe weather train flight hotel museum book film song game").split()


def short_queries(count: int, seed: int = 0) -> list[str]:
    """Search-style queries of 4-12 words (~8-20 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(4, 12))) + "?" for _ in range(count)]


def raw_loop(model: OnnxModel, card: ModelCard, ids: list[list[int]], task: int | None) -> float:
    """Texts/s of one ONNX run per text (no padding)."""
    start = time.perf_counter()
    for sequence in ids:
        batch, mask = pad([np.asarray(sequence)], card.pad_token_id)
        model.token_states(batch, mask, task)
    return len(ids) / (time.perf_counter() - start)


def raw_batched(model: OnnxModel, card: ModelCard, ids: list[list[int]], task: int | None,
                sizes=(8, 16, 32, 64, 128)) -> tuple[float, int]:
    """Best texts/s over fixed batch sizes of length-sorted texts, and that size."""
    ordered = sorted(ids, key=len)
    best = (0.0, 0)
    for size in sizes:
        start = time.perf_counter()
        for i in range(0, len(ordered), size):
            batch, mask = pad([np.asarray(s) for s in ordered[i : i + size]], card.pad_token_id)
            model.token_states(batch, mask, task)
        best = max(best, (len(ordered) / (time.perf_counter() - start), size))
    return best


async def served(base: str, texts: list[str], clients: int, per_request: int
                 ) -> dict[str, float]:
    """Each client sends ``per_request`` texts per request until the texts run out."""
    queue = [texts[i : i + per_request] for i in range(0, len(texts), per_request)][::-1]
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            chunk = queue.pop()
            start = time.perf_counter()
            response = await http.post(f"{base}/v1/embeddings", json={"input": chunk})
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await http.post(f"{base}/v1/embeddings", json={"input": texts[:8]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"texts_per_s": len(texts) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: MiniLM int8)")
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--load", nargs="+", default=["1x1", "32x1", "8x16"],
                        help="CLIENTSxTEXTS_PER_REQUEST pairs")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads for raw runs")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    folder = args.model or build_minilm(workdir / "minilm")
    card = ModelCard.from_folder(folder)
    task = card.task_id("text-matching") if card.tasks else None
    texts = short_queries(args.texts)
    ids = TextTokenizer(folder).encode(texts, card.max_tokens, truncate=False)
    print(f"model {folder.name}: {len(texts)} texts, mean {np.mean([len(s) for s in ids]):.1f}"
          " tokens")

    model = OnnxModel(folder / "onnx/model.onnx", threads=args.threads)
    raw_batched(model, card, ids[:64], task, sizes=(8,))  # warm-up
    rows = [{"mode": "raw-loop", "clients": 0,
             "texts_per_s": raw_loop(model, card, ids, task)}]
    best, size = raw_batched(model, card, ids, task)
    rows.append({"mode": f"raw-batched-{size}", "clients": 0, "texts_per_s": best})
    del model
    for row in rows:
        print(f"{row['mode']:>16}: {row['texts_per_s']:8.1f} texts/s")

    with serve_run(folder, workdir, cpus=None) as service:
        base = service.url
        for load in args.load:
            clients, per_request = (int(x) for x in load.split("x"))
            result = asyncio.run(served(base, texts, clients, per_request))
            rows.append({"mode": "served", "clients": clients, "per_request": per_request,
                         **result})
            print(f"{'served':>16}: {result['texts_per_s']:8.1f} texts/s, {clients:2d} clients x "
                  f"{per_request:2d} texts/request, p50 {result['p50_ms']:.1f} ms, "
                  f"p99 {result['p99_ms']:.1f} ms "
                  f"({result['texts_per_s'] / rows[0]['texts_per_s']:.2f}x raw loop, "
                  f"{result['texts_per_s'] / best:.2f}x raw batched)")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"throughput-{folder.name}.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["mode", "clients", "per_request", "texts_per_s",
                                               "p50_ms", "p99_ms"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
