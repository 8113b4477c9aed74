"""The scheduler alone, under closed-loop clients: texts/s and padding per run-planning choice.

Asyncio clients call ``Scheduler.embed`` in this process (no Ray, no HTTP), each waiting a
few ms between requests as a network would, so windows form as they do in a replica. The
contenders are values of ``planning.EXTRA_ROUNDS`` (0: the fewest runs a window needs),
alternated A B, B A over ``--rounds``. Writes benchmarks/results/scheduler_ab-<model>.csv.

    python -m benchmarks.scheduler_ab --model models/jina-v3 --seconds 30 --extra-rounds 0 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

from benchmarks.plots import RESULTS, write_csv
from benchmarks.throughput import model_folder
from benchmarks.workloads import benchmark_texts
from encoder.ingress.tokenize import TextTokenizer
from encoder.parcels import Parcel
from encoder.scheduling import planning
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import ServiceSettings

LOADS = [("short", 32, 1), ("short", 8, 16), ("long", 4, 16)]


async def drive(scheduler: Scheduler, ids: list[list[int]], task: int | None, clients: int,
                per_request: int, seconds: float, runs: list) -> dict:
    """``clients`` loops of ``per_request`` texts for ``seconds``: texts/s, the share of real
    tokens in the runs' padded ones, and texts per run."""
    pause = random.Random(0)
    done = real = 0
    deadline = time.monotonic() + seconds

    async def client(k: int) -> None:
        nonlocal done, real
        i = k * per_request
        while time.monotonic() < deadline:
            batch = [ids[(i + j) % len(ids)] for j in range(per_request)]
            i += per_request * clients
            await asyncio.sleep(pause.uniform(0.005, 0.03))  # the way there and back
            await scheduler.embed([Parcel.from_lists(task, batch)])
            done += len(batch)
            real += sum(map(len, batch))

    runs.clear()
    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    padded = sum(padded for _, padded, _ in runs) or 1
    return {"texts_per_s": round(done / (time.perf_counter() - start), 2),
            "real_per_padded": round(real / padded, 3),
            "texts_per_run": round(sum(n for n, _, _ in runs) / max(1, len(runs)), 1)}


async def measure(args: argparse.Namespace, folder: Path) -> list[dict]:
    runs: list = []
    scheduler = Scheduler.load(ServiceSettings(model=str(folder)), threads=2,
                               on_run=lambda *run: runs.append(run))
    card, tokenizer = scheduler.card, TextTokenizer(folder)
    ids = {w: tokenizer.encode(texts, card.max_tokens, truncate=True)
           for w, texts in benchmark_texts().items()}
    task = card.task_id("text-matching") if card.tasks else None
    await scheduler.embed([Parcel.from_lists(task, ids["short"][:1])])  # warm-up
    rows = []
    for round_ in range(args.rounds):
        order = args.extra_rounds if round_ % 2 == 0 else args.extra_rounds[::-1]
        for extra in order:
            planning.EXTRA_ROUNDS = extra
            for workload, clients, per_request in LOADS:
                row = {"round": round_, "extra_rounds": extra, "load": f"{workload} "
                       f"{clients}x{per_request}", **await drive(
                           scheduler, ids[workload], task, clients, per_request,
                           args.seconds, runs)}
                print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-v3")
    parser.add_argument("--seconds", type=float, default=30, help="per load")
    parser.add_argument("--rounds", type=int, default=2, help="A B, then B A, ...")
    parser.add_argument("--extra-rounds", type=int, nargs="+", default=[0, 3])
    args = parser.parse_args()
    folder = model_folder(args.model)
    rows = asyncio.run(measure(args, folder))
    RESULTS.mkdir(exist_ok=True)
    print(write_csv(rows, RESULTS / f"scheduler_ab-{folder.name}.csv"))


if __name__ == "__main__":
    main()
