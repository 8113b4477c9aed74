"""Which ``max_run_tokens`` turns CPU into the most embeddings? The encoder core alone.

Feeds ``Scheduler.run_window`` what a loaded encoder replica's window holds (several requests'
parcels at once) and reports texts/s per budget, next to
the raw ceiling (globally length-sorted fixed batches). No Ray, no HTTP: the packing only.

    python -m benchmarks.batch_budget --model models/jina-sized --workload long
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.workloads import long_passages, raw_best_batch, short_queries
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.parcels import Parcel, request_parcels
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings


def queued_work(ids: list[list[int]], per_request: int, requests: int, budget: int,
                task: int | None) -> list[list[Parcel]]:
    """Groups of ``requests`` requests of ``per_request`` texts, split as the ingress does."""
    groups, step = [], per_request * requests
    for start in range(0, len(ids) - step + 1, step):
        group = []
        for r in range(requests):
            request = ids[start + r * per_request : start + (r + 1) * per_request]
            group += request_parcels(task, request, budget)
        groups.append(group)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/jina-sized"))
    parser.add_argument("--workload", choices=["short", "long"], default="long")
    parser.add_argument("--budgets", type=int, nargs="+",
                        default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--per-request", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="requests queued per run")
    parser.add_argument("--texts", type=int, default=64, help="texts each budget runs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    card = ModelCard.from_folder(args.model)
    tokenizer = TextTokenizer(args.model)
    texts = long_passages(256) if args.workload == "long" else short_queries(1024)
    ids = tokenizer.encode(texts, card.max_tokens, True)[: args.texts]
    task = card.task_id("text-matching") if card.tasks else None
    model = OnnxModel(served_onnx(args.model / "onnx/model.onnx", card), args.threads)
    ceiling = raw_best_batch(model, card, ids, task)
    print(f"raw ceiling: {ceiling.texts_per_s:.2f} texts/s ({ceiling.detail})", flush=True)
    for budget in args.budgets:
        scheduler = Scheduler(model, card, SchedulerSettings(
            max_run_tokens=budget, sort_window_tokens=max(budget, 4096), parallel_runs=1))
        done, start = 0, time.perf_counter()
        for group in queued_work(ids, args.per_request, args.requests, budget, task):
            scheduler.run_window(group)
            done += sum(len(b) for b in group)
        rate = done / (time.perf_counter() - start)
        print(f"budget {budget:>5}: {rate:.2f} texts/s ({rate / ceiling.texts_per_s:.2f} of "
              f"the ceiling)", flush=True)


if __name__ == "__main__":
    main()
