"""Packing sequences into ONNX runs by padded tokens: the scheduler's run planning."""

from __future__ import annotations

import numpy as np


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
    """Runs as ``plan_runs`` packs them, but a multiple of ``parts`` runs of even size.

    For ``parts`` runs at once: greedy packing leaves a small last run whose part idles
    while the others finish (32 queries: runs of 24 and 8). The smallest budget needing no
    more runs than the next multiple of ``parts`` evens them (two runs of 16), never more
    runs than sequences.
    """
    runs = plan_runs(lengths, budget)
    if parts <= 1 or len(lengths) < 2:
        return runs
    target = min(len(lengths), -(-len(runs) // parts) * parts)
    low, high = 1, budget  # fewer runs with a larger budget: search the smallest that fits
    while low < high:
        middle = (low + high) // 2
        if len(plan_runs(lengths, middle)) <= target:
            high = middle
        else:
            low = middle + 1
    return plan_runs(lengths, low)
