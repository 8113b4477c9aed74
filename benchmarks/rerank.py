"""Reranking served beside jina-v3's real graph (serve_config.rerank.yaml) against a raw run.

A reranker of jina-reranker-v2-base-multilingual's size (XLM-R base: 12 layers, width 768,
12 heads, FFN 3072, 1026 positions, its tokenizer; random weights) scores one query against
``--documents`` documents of ~200 tokens:

- raw: the same ONNX in this process, the pairs sorted by length and run N at a time, the
  best N (the ceiling the service's scheduler aims at), with the served replica's threads;
- served: ``POST /v1/rerank`` with all the documents, ``--clients`` clients at once, on the
  shipped two-model config (jina-v3 real graph + the reranker on its own deployment);
- isolation: a lone jina-v3 query's latency idle, and while 4 clients keep the reranker busy;
- memory: each encoder replica's peak RSS against its declared ``memory``.

Usage: python -m benchmarks.rerank [--seconds 30] [--documents 100] [--clients 1 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.host import describe_host
from benchmarks.plots import write_csv
from benchmarks.throughput import RESULTS, model_folder
from benchmarks.workloads import long_passages, raw_best_batch
from encoder.ingress.rerank import plan_pairs
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel
from tests.marked_processes import memory_mb
from tests.models import VOCAB, build_reranker_tiny
from tests.serve_process import load_config, serve_run

LAYERS, WIDTH, HEADS, FFN, POSITIONS = 12, 768, 12, 3072, 1026
NAME = "jina-reranker-v2-base-multilingual"
QUERY = "which design keeps the service answering while a burst of documents is ranked?"


def build_reranker_sized(out: Path, seed: int = 0) -> Path:
    """jina-reranker-v2-base-multilingual's shape at its real size, random weights."""
    import onnx

    from tests.cross_encoder_graph import cross_encoder_graph

    if (out / "onnx/model.onnx").is_file():
        return out
    build_reranker_tiny(out)  # tokenizer, config keys, layout; graph and sizes replaced
    model = cross_encoder_graph(WIDTH, HEADS, VOCAB, POSITIONS, 2, False,
                                np.random.default_rng(seed), layers=LAYERS, ffn=FFN)
    onnx.save_model(model, str(out / "onnx/model.onnx"), save_as_external_data=True,
                    location="model.onnx_data")
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_size=WIDTH, num_attention_heads=HEADS, num_hidden_layers=LAYERS,
                  intermediate_size=FFN)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def raw_pairs_per_s(folder: Path, texts: list[str], threads: int) -> tuple[float, str, float]:
    """The in-process ceiling: pairs/s, its batch size, and the mean pair length."""
    tokenizer, card = TextTokenizer(folder), ModelCard.from_folder(folder)
    ids = tokenizer.content_ids([QUERY, *texts])
    plan = plan_pairs(tokenizer.pair, ids[0], ids[1:], card.max_tokens)
    model = OnnxModel(folder / "onnx/model.onnx", threads)
    model.canary(card.pad_token_id)
    best = raw_best_batch(model, card, plan.sequences, None, sizes=(1, 2, 4, 8, 16, 32))
    return best.texts_per_s, best.detail, float(np.mean([len(s) for s in plan.sequences]))


async def rerank_load(url: str, texts: list[str], clients: int, seconds: float,
                      stop: asyncio.Event | None = None) -> tuple[float, dict[int, int]]:
    """Documents ranked per second by ``clients`` loops of one request each; and the count
    of each other status. A 429 waits its ``Retry-After``, as the Cohere and openai SDKs
    do."""
    body = {"model": NAME, "query": QUERY, "documents": texts, "return_documents": False}
    done, others = 0, {}

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            async with http.post(f"{url}/v1/rerank", json=body) as response:
                await response.read()
                if response.status == 200:
                    done += len(texts)
                    continue
                others[response.status] = others.get(response.status, 0) + 1
                if response.status == 429:
                    await asyncio.sleep(float(response.headers.get("retry-after", 1)))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        async with http.post(f"{url}/v1/rerank", json=body) as warm:
            await warm.read()
        deadline = time.monotonic() + seconds
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return done / (time.perf_counter() - start), others


async def lone_query_ms(url: str, seconds: float, busy: int = 0,
                        texts: list[str] | None = None) -> np.ndarray:
    """Latencies of one-query embeddings requests sent one after another, while ``busy``
    rerank clients run."""
    stop = asyncio.Event()
    background = (asyncio.create_task(rerank_load(url, texts, busy, seconds + 600, stop))
                  if busy else None)
    latencies = []
    async with aiohttp.ClientSession() as http:
        if busy:
            await asyncio.sleep(5)  # the rerank runs under way
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            async with http.post(f"{url}/v1/embeddings", json={
                    "model": "jina-embeddings-v3", "input": f"what is query {i} about?",
                    "task": "retrieval.query"}) as response:
                await response.read()
                assert response.status == 200, await response.text()
            latencies.append(time.perf_counter() - start)
            i += 1
            await asyncio.sleep(0.05)
    stop.set()
    if background:
        await background
    return np.array(latencies) * 1000


def declared_memory_mb(deployment: str) -> float:
    config = load_config(Path("serve_config.rerank.yaml"))
    found = next(d for d in config["applications"][0]["deployments"]
                 if d["name"] == deployment)
    return found["ray_actor_options"]["memory"] / 2**20


def served_rows(service, texts: list[str], raw: float, clients: list[int], seconds: float,
                run_tokens: int) -> list[dict]:
    rows = []
    for count in clients:
        rate, others = asyncio.run(rerank_load(service.url, texts, count, seconds))
        print(f"served, max_run_tokens {run_tokens}, {count} clients: {rate:.2f} pairs/s = "
              f"{rate / raw:.2f}x raw (other statuses {others})", flush=True)
        rows.append({"what": f"served pairs/s, {count} clients, max_run_tokens {run_tokens}",
                     "value": round(rate, 2), "detail": f"{rate / raw:.2f}x raw, {others}"})
    return rows


def isolation_rows(service, texts: list[str], seconds: float) -> list[dict]:
    """A lone query's latency idle and beside 4 rerank clients; each encoder's peak RSS."""
    pids = {name: service.replica_pid(name) for name in ("Encoder", "Reranker")}
    rows = []
    idle = asyncio.run(lone_query_ms(service.url, seconds))
    busy = asyncio.run(lone_query_ms(service.url, seconds, busy=4, texts=texts))
    for label, ms in (("idle", idle), ("during rerank load", busy)):
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        print(f"lone jina-v3 query {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"({len(ms)} requests)", flush=True)
        rows.append({"what": f"lone query p50 ms, {label}", "value": round(p50, 1),
                     "detail": f"p99 {p99:.1f}"})
    ratio = np.percentile(busy, 50) / np.percentile(idle, 50)
    print(f"lone query p50 during rerank load: {ratio:.2f}x idle", flush=True)
    for name, pid in pids.items():  # peaks since each replica started
        peak, declared = memory_mb(pid)["peak_rss"], declared_memory_mb(name)
        print(f"{name} peak RSS {peak:.0f} MB of {declared:.0f} MB declared", flush=True)
        rows.append({"what": f"{name} peak RSS MB", "value": round(peak),
                     "detail": f"of {declared:.0f} declared"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--run-tokens", type=int, nargs="+", default=[2048],
                        help="the Reranker's scheduler.max_run_tokens, one start each; "
                             "isolation and memory are measured on the first")
    args = parser.parse_args()
    reranker = build_reranker_sized(Path("models/reranker-sized")).resolve()
    jina = model_folder("jina-v3").resolve()
    texts = long_passages(args.documents, seed=3, words=(180, 210))  # ~200 tokens
    host = describe_host()
    print(f"host: {host}", flush=True)
    threads = 2  # serve_config.rerank.yaml's Reranker ort_threads
    raw, detail, mean_len = raw_pairs_per_s(reranker, texts, threads)
    print(f"raw: {raw:.1f} pairs/s ({detail}, mean pair {mean_len:.0f} tokens, {threads} "
          "threads)", flush=True)
    rows = [{"what": "raw pairs/s", "value": round(raw, 2), "detail": detail}]
    workdir = Path(tempfile.mkdtemp(prefix="rerank-"))
    for index, run_tokens in enumerate(args.run_tokens):
        extra = [{"model": str(reranker), "served_model_name": NAME,
                  "aliases": ["jina-reranker-v2"], "deployment": "Reranker",
                  "scheduler": {"ort_threads": 2, "max_run_tokens": run_tokens}}]
        (workdir / str(run_tokens)).mkdir()
        with serve_run(jina, workdir / str(run_tokens), config_file="serve_config.rerank.yaml",
                       cpus=None, args={"extra_models": extra}, timeout_s=900) as service:
            rows += served_rows(service, texts, raw, args.clients, args.seconds, run_tokens)
            if index == 0:
                rows += isolation_rows(service, texts, args.seconds)
    for row in rows:
        row["host"] = host
    print(write_csv(rows, RESULTS / "rerank.csv"))


if __name__ == "__main__":
    main()
