"""The bulk job against the raw in-process ceiling, and its memory on corpora of two sizes.

One run: the raw ceiling (best fixed batch of length-sorted texts, one ORT session with the
actor's threads, in this process), then ``run_job`` (what ``jina-embed`` runs) on a parquet
corpus of the same texts, repeated to ``--rows``, and on one ``--scale`` times bigger. Ray
Data's block budget is set to ``--block-mb`` so the corpus is many times one block; the peak
RSS summed over the job's processes (this driver and Ray's workers, sampled from /proc) shows
whether memory follows the blocks in flight or the corpus.

    python -m benchmarks.bulk --model minilm-sized --rows 20000 --scale 4
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.throughput import model_folder
from benchmarks.workloads import benchmark_texts, raw_best_batch
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.settings import ServiceSettings
from jina_serve.bulk import BulkOptions
from jina_serve.embed_job import JobPlan, local_ray_cpus, run_job
from jina_serve.processes import processes


def ray_rss_mb() -> dict[str, float]:
    """RSS in MB of this driver and of each Ray worker on the machine, by process title."""
    found: dict[str, float] = {}
    for process in processes():
        if process.pid == os.getpid():
            name = "driver"
        elif process.command.startswith("ray::"):
            name = process.command.split()[0]
        else:
            continue
        found[name] = found.get(name, 0.0) + process.rss / 1e6
    return found


class PeakRss:
    """Samples ``ray_rss_mb`` every 0.2 s while in the block: the peak of the sum, and of
    each process title."""

    def __enter__(self) -> PeakRss:
        self.peak, self.each, self._stop = 0.0, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            sample = ray_rss_mb()
            self.peak = max(self.peak, sum(sample.values()))
            for name, mb in sample.items():
                self.each[name] = max(self.each.get(name, 0.0), mb)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-sized")
    parser.add_argument("--workload", choices=["short", "long"], default="long")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--block-mb", type=float, default=4)
    parser.add_argument("--cpus", type=float, default=1.8, help="the actor's num_cpus")
    args = parser.parse_args()

    import ray

    folder = model_folder(args.model).resolve()
    texts = benchmark_texts()[args.workload]
    card = ModelCard.from_folder(folder)
    threads = max(1, round(args.cpus))
    ids = TextTokenizer(folder).encode(texts[:256], card.max_tokens, True)
    task = card.task_id("text-matching") if card.tasks else None
    ceiling = raw_best_batch(OnnxModel(served_onnx(folder / "onnx/model.onnx", card), threads),
                             card, ids, task)
    print(f"raw ceiling: {ceiling.texts_per_s:.1f} texts/s ({ceiling.detail})", flush=True)

    ray.init(address="local", include_dashboard=False, logging_level="WARNING",
             num_cpus=local_ray_cpus())
    ray.data.DataContext.get_current().target_max_block_size = int(args.block_mb * 1e6)
    work = Path(tempfile.mkdtemp(prefix="bulk-"))
    plan = JobPlan(settings=ServiceSettings(model=str(folder)), options=BulkOptions(),
                   output="", actor_cpus=args.cpus, actors=1)
    for rows in (args.rows, args.rows * args.scale):
        corpus = work / f"corpus-{rows}.parquet"
        column = [texts[i % len(texts)] for i in range(rows)]
        pq.write_table(pa.table({"id": list(range(rows)), "text": column}), corpus,
                       row_group_size=1000)
        output = work / f"out-{rows}"
        with PeakRss() as rss:
            start = time.perf_counter()
            summary = run_job(str(corpus), dataclasses.replace(plan, output=str(output)))
            seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in output.rglob("*.parquet")) / 1e6
        rate = summary["rows"] / seconds
        print(f"{rows} rows ({size:.0f} MB of output, {size / args.block_mb:.0f} blocks' "
              f"worth): {rate:.1f} texts/s = {rate / ceiling.texts_per_s:.2f} of the raw "
              f"ceiling (job start included), peak RSS {rss.peak:.0f} MB", flush=True)
        top = sorted(rss.each.items(), key=lambda kv: -kv[1])[:4]
        print("  peaks: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in top), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
