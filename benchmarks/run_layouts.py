"""How should one encoder replica run ONNX on its cores? In-process, no Ray, no HTTP.

Each layout runs in a fresh process (so its RSS is its own), in interleaved rounds (host
drift lands on every layout alike), on the same length-sorted runs of at most
``--budget`` padded tokens, for short queries and long passages; plus a lone one-text run:

  1x2           one session, 2 ORT threads, one run at a time
  1x2 2-at-once one session, 2 ORT threads, two runs at once (two calling threads)
  1x1 2-at-once one session, 1 ORT thread, two runs at once (a lone run gets 1 thread)
  2+1 parallel     a 2-thread session for lone runs and a 1-thread session run by two
                callers when several runs are queued (the earlier ``parallel_runs: 2``)

    python -m benchmarks.run_layouts --model models/jina-sized --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.workloads import benchmark_texts, single_run_ms
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, pad, served_onnx
from encoder.scheduling.memory import resident_bytes

# layout -> (threads of the session that runs queued work, callers at once, lone-run threads)
LAYOUTS = {"1x2": (2, 1, 2), "1x2 2-at-once": (2, 2, 2), "1x1 2-at-once": (1, 2, 1),
           "2+1 parallel": (1, 2, 2)}
TEXTS = {"short": 256, "long": 48}


def sorted_runs(ids: list[list[int]], budget: int) -> list[list[list[int]]]:
    """Length-sorted runs of at most ``budget`` padded tokens, longest first."""
    ordered, runs = sorted(ids, key=len, reverse=True), []
    while ordered:
        count = max(1, budget // len(ordered[0]))
        runs.append(ordered[:count])
        ordered = ordered[count:]
    return runs


def measure(model_dir: Path, layout: str, budget: int) -> dict:
    """Texts/s per workload, the lone run's p50 and the process's RSS, for one layout."""
    threads, callers, lone_threads = LAYOUTS[layout]
    card = ModelCard.from_folder(model_dir)
    task = card.task_id("text-matching") if card.tasks else None
    tokenizer = TextTokenizer(model_dir)
    texts = benchmark_texts()
    onnx = served_onnx(model_dir / "onnx/model.onnx", card)
    queued = OnnxModel(onnx, threads)
    lone = queued if lone_threads == threads else OnnxModel(onnx, lone_threads)

    def run(batch: list[list[int]]) -> None:
        queued.token_states(*pad([np.asarray(s) for s in batch], card.pad_token_id), task)

    out = {}
    with ThreadPoolExecutor(callers) as pool:
        for workload, count in TEXTS.items():
            ids = tokenizer.encode(texts[workload][:count], card.max_tokens, True)
            runs = sorted_runs(ids, budget)
            list(pool.map(run, runs[:2]))  # warm-up
            start = time.perf_counter()
            list(pool.map(run, runs))
            out[workload] = len(ids) / (time.perf_counter() - start)
    short = tokenizer.encode(texts["short"][:40], card.max_tokens, True)
    out["lone_p50_ms"] = float(np.percentile(single_run_ms(lone, card, short, task)[5:], 50))
    out["rss_mb"] = resident_bytes() / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/jina-sized"))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one layout, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, args.one, args.budget)))
        return
    results: dict[str, list[dict]] = {layout: [] for layout in args.layouts}
    for round_ in range(args.rounds):
        for layout in args.layouts:
            done = subprocess.run([sys.executable, "-m", "benchmarks.run_layouts", "--model",
                                   str(args.model), "--budget", str(args.budget), "--one",
                                   layout], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[layout].append(result)
            print(f"round {round_} {layout:>14}: short {result['short']:7.2f}  long "
                  f"{result['long']:6.2f} texts/s  lone p50 {result['lone_p50_ms']:6.1f} ms  "
                  f"RSS {result['rss_mb']:6.0f} MB", flush=True)
    print("medians:")
    for layout, rows in results.items():
        median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        print(f"  {layout:>14}: short {median['short']:7.2f}  long {median['long']:6.2f} "
              f"texts/s  lone p50 {median['lone_p50_ms']:6.1f} ms  RSS {median['rss_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
