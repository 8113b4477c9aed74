"""Packing sequences into ONNX runs by padded tokens: the scheduler's run planning."""

from __future__ import annotations

import numpy as np

# A run's fixed cost in padded tokens' worth: one-thread runs of 17-token queries cost
# 31 ms + 115 ms a query on jina-v3 (4.6 tokens), 1.7 + 3.6 ms on MiniLM (8).
RUN_COST_TOKENS = 6
# Rounds of ``parts`` runs a window may take beyond the fewest, to pad less (0: the fewest;
# benchmarks/scheduler_ab.py compares values).
EXTRA_ROUNDS = 3


def plan_runs(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Pack sequences into ONNX runs of at most ``budget`` padded tokens (longest x count).

    Sequences are sorted longest first so each run pads to a similar length; a sequence
    longer than the budget runs alone. Returns index arrays into ``lengths``.
    """
    order = np.argsort(-lengths, kind="stable")
    runs, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        count = max(1, budget // max(longest, 1))
        runs.append(order[start : start + count])
        start += count
    return runs


def plan_even_runs(lengths: np.ndarray, budget: int, parts: int) -> list[np.ndarray]:
    """Runs as ``plan_runs`` packs them, but a multiple of ``parts`` runs of even size, as
    many as finish soonest on ``parts`` workers.

    For ``parts`` runs at once: greedy packing leaves a small last run whose part idles
    while the others finish (32 queries: runs of 24 and 8); evened out, two runs of 16.
    More runs pad less, each spanning fewer lengths, but each costs ``RUN_COST_TOKENS``
    more: of the fewest runs and up to ``EXTRA_ROUNDS`` more rounds of ``parts``, the plan
    whose busiest worker finishes first wins (never more runs than sequences).
    """
    runs = plan_runs(lengths, budget)
    if parts <= 1 or len(lengths) < 2:
        return runs
    fewest = -(-len(runs) // parts) * parts
    targets = sorted({min(len(lengths), fewest + parts * extra)
                      for extra in range(EXTRA_ROUNDS + 1)})
    plans = [_runs_within(lengths, budget, target) for target in targets]
    return min(plans, key=lambda plan: _finish(lengths, plan, parts))


def _runs_within(lengths: np.ndarray, budget: int, target: int) -> list[np.ndarray]:
    """``plan_runs`` with the smallest budget that needs no more than ``target`` runs."""
    low, high = 1, budget  # fewer runs with a larger budget: search the smallest that fits
    while low < high:
        middle = (low + high) // 2
        if len(plan_runs(lengths, middle)) <= target:
            high = middle
        else:
            low = middle + 1
    return plan_runs(lengths, low)


def _finish(lengths: np.ndarray, plan: list[np.ndarray], parts: int) -> float:
    """When the busiest of ``parts`` workers is done with ``plan``, in padded tokens, the
    biggest runs first to whichever worker is free (as ``RunExecutor`` hands them out)."""
    loads = [0.0] * parts
    for cost in sorted((len(run) * int(lengths[run].max()) + RUN_COST_TOKENS for run in plan),
                       reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)
