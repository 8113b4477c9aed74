"""Texts and load generators shared by the benchmarks: raw in-process runs and HTTP clients."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, pad
from tests.marked_processes import memory_mb


def parse_load(load: str) -> tuple[str, int, int]:
    """``short:32x1`` -> the workload, its clients and the texts per request."""
    workload, shape = load.split(":")
    clients, per_request = (int(x) for x in shape.split("x"))
    return workload, clients, per_request


def in_fresh_process(target, *args, max_rss_mb: float | None = None):
    """``target(*args)`` in a new (spawned) process: what it returns, and a peak RSS of its
    own (a forked child's would start from this process's). With ``max_rss_mb`` a child
    that grows past it is killed first and None returned: a run the host cannot hold."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_put_result, args=(results, target, args))
    process.start()
    while True:
        try:
            result = results.get(timeout=0.5)
            break
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"the measuring process died ({process.exitcode})") from None
            if max_rss_mb and memory_mb(process.pid)["rss"] > max_rss_mb:
                process.kill()
                result = None
                break
    process.join()
    return result


def _put_result(queue, target, args) -> None:
    queue.put(target(*args))


_WORDS = ("how what why where cat dog market price river city music history science data "
          "model search engine query answer learn fast small large old new best cheap recipe "
          "weather train flight hotel museum book film song game energy policy health").split()


def short_queries(count: int, seed: int = 0) -> list[str]:
    """Search-style queries of 10-16 words (~15-25 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(10, 16))) + "?" for _ in range(count)]


def long_passages(count: int, seed: int = 1, words: tuple[int, int] = (80, 400)) -> list[str]:
    """Passages of 80-400 words (~100-500 tokens), or of as many ``words``."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(*words))) + "." for _ in range(count)]


def benchmark_texts() -> dict[str, list[str]]:
    """The served benchmarks' texts by workload, so their figures compare across scripts."""
    return {"short": short_queries(2000), "long": long_passages(400)}


@dataclass
class Measured:
    texts_per_s: float
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    detail: str = ""
    batch_size: int | None = None  # the best fixed batch size, for raw_best_batch


def reopened(path: Path, threads: int, defaults: bool = False,
             entries: dict[str, str] | None = None) -> OnnxModel:
    """``OnnxModel(path, threads)`` with its session opened again: on ORT's default options
    but the thread count (``defaults``), else on the service's; plus session config
    ``entries``. The yardsticks and variants a benchmark holds the service's options to."""
    import onnxruntime as ort

    model = OnnxModel(path, threads)
    options = ort.SessionOptions() if defaults else model.session.get_session_options()
    options.intra_op_num_threads = threads
    for key, value in (entries or {}).items():
        options.add_session_config_entry(key, value)
    model.session = ort.InferenceSession(os.fspath(path), options,
                                         providers=["CPUExecutionProvider"])
    return model


def single_run_ms(model: OnnxModel, card: ModelCard, ids: list[list[int]],
                  task: int | None, seconds: float = float("inf")) -> np.ndarray:
    """Milliseconds of one ONNX run per text, in order, until ``ids`` or ``seconds`` run out."""
    latencies, deadline = [], time.monotonic() + seconds
    for sequence in ids:
        start = time.perf_counter()
        batch, mask = pad([np.asarray(sequence)], card.pad_token_id)
        model.token_states(batch, mask, task)
        latencies.append(time.perf_counter() - start)
        if time.monotonic() > deadline:
            break
    return np.array(latencies) * 1000


def raw_single(model: OnnxModel, card: ModelCard, ids: list[list[int]],
               task: int | None, seconds: float) -> Measured:
    """One ONNX run per text, in this process (the old server's way); latency per text."""
    ms = single_run_ms(model, card, ids, task, seconds)
    return Measured(1000 / ms.mean(), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


def raw_best_batch(model: OnnxModel, card: ModelCard, ids: list[list[int]], task: int | None,
                   sizes=(1, 2, 4, 8, 16, 32, 64), sort: bool = True,
                   callers: int = 1) -> Measured:
    """Best texts/s over fixed batch sizes: with ``sort``, of length-sorted texts (the
    in-process ceiling); without, in the order given (fixed-count batching as a plain
    server or script does it, padding each batch to its longest text).

    ``callers`` threads run batches at once on ``model`` (then a session with fewer
    threads), each taking the next batch when free, as an encoder's parallel runs do.
    Every size runs all of ``ids``: a time limit would measure a few batches, and which
    lengths they hold would decide the figure (one batch of 16 long passages takes seconds).
    """
    ordered = sorted(ids, key=len) if sort else ids
    best = Measured(0.0)
    for size in sizes:
        start = time.perf_counter()
        run_batches(model, card, [ordered[i : i + size] for i in range(0, len(ordered), size)],
                    task, callers)
        rate = len(ordered) / (time.perf_counter() - start)
        if rate > best.texts_per_s:
            best = Measured(rate, detail=f"batch {size}", batch_size=size)
    return best


def run_batches(model: OnnxModel, card: ModelCard, batches: list[list[list[int]]],
                task: int | None, callers: int = 1) -> None:
    """Run ``batches`` in order, ``callers`` threads at once, each taking the next when free."""

    def run(batch: list[list[int]]) -> None:
        model.token_states(*pad([np.asarray(s) for s in batch], card.pad_token_id), task)

    if callers == 1:  # in this thread, as the single-caller figures always were
        for batch in batches:
            run(batch)
        return
    with ThreadPoolExecutor(callers) as pool:
        for _ in pool.map(run, batches):
            pass


async def served(url: str, texts: list[str], clients: int, per_request: int,
                 seconds: float, headers: dict | None = None,
                 path: str = "/v1/embeddings", model: str | None = None) -> Measured:
    """``clients`` loops, each posting ``per_request`` texts per request, for ``seconds``.

    aiohttp, not httpx: the clients share the service's cores, and httpx spends ~3 ms of CPU
    per request here, several times aiohttp's (docs/performance.md).
    """
    latencies: list[float] = []
    errors = 0
    deadline = 0.0  # set after the warm-up request, which may itself take longer than that

    def body(chunk: list[str]) -> dict:
        return {"input": chunk, **({"model": model} if model else {})}

    async def client(http: aiohttp.ClientSession, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < deadline:
            chunk = [texts[(i + k) % len(texts)] for k in range(per_request)]
            i += per_request * clients
            start = time.perf_counter()
            async with http.post(url + path, json=body(chunk), headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async with http.post(url + path, json=body(texts[:per_request])) as warm:
            await warm.read()
        deadline = time.monotonic() + seconds
        start = time.perf_counter()
        await asyncio.gather(*(client(http, c * per_request) for c in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies or [float("nan")]) * 1000
    return Measured(len(latencies) * per_request / elapsed, float(np.percentile(ms, 50)),
                    float(np.percentile(ms, 99)), f"{errors} errors" if errors else "")
